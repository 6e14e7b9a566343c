"""The migration phase state machine: order, timing, rollback on each failure."""
from __future__ import annotations

import itertools

import pytest

from vroom.phases import MigrationFailed, Phase, PhaseRunner, Status, Step

PHASES = list(Phase)


def make_steps(log: list[str], fail_at: str | None = None, undo_fails: str | None = None,
               commit_at: str | None = None) -> list[Step]:
    steps = []
    for ph in PHASES:
        name = ph.value

        def do(name=name):
            log.append(f"do {name}")
            if name == fail_at:
                raise RuntimeError(f"{name} broke\nsecond line")
            return {"n": len(log)}

        def undo(name=name):
            log.append(f"undo {name}")
            if name == undo_fails:
                raise OSError("undo broke")

        steps.append(Step(name, ph, do, undo, commit=(name == commit_at)))
    return steps


def ticking_clock():
    c = itertools.count()
    return lambda: float(next(c))


def test_all_steps_run_in_order_and_are_timed() -> None:
    log: list[str] = []
    runner = PhaseRunner(clock=ticking_clock())
    recs = runner.run(make_steps(log))
    assert log == [f"do {p.value}" for p in PHASES]
    assert [r.status for r in recs] == [Status.DONE] * len(PHASES)
    assert all(r.seconds == 1.0 for r in recs)
    assert recs[2].details == {"n": 3}
    assert runner.seconds(Phase.CP_MIGRATION) == 1.0


@pytest.mark.parametrize("fail_at", [p.value for p in PHASES])
def test_failure_in_each_phase_undoes_the_done_steps_in_reverse(fail_at: str) -> None:
    log: list[str] = []
    runner = PhaseRunner()
    with pytest.raises(MigrationFailed) as ei:
        runner.run(make_steps(log, fail_at=fail_at))
    i = [p.value for p in PHASES].index(fail_at)
    done = [p.value for p in PHASES[:i]]
    # the failed step cleans up after itself first, then the done ones in reverse
    assert log == ([f"do {n}" for n in done + [fail_at]] + [f"undo {fail_at}"]
                   + [f"undo {n}" for n in reversed(done)])
    e = ei.value
    assert e.step == fail_at and e.rolled_back
    assert str(e) == f"step {fail_at} ({PHASES[i].value}) failed: {fail_at} broke; rolled back"
    assert "\n" not in str(e)
    statuses = [r.status for r in e.records]
    assert statuses == [Status.ROLLED_BACK] * i + [Status.FAILED] + [Status.PENDING] * (len(PHASES) - i - 1)


def test_failed_undo_is_reported_and_the_rest_still_undone() -> None:
    log: list[str] = []
    with pytest.raises(MigrationFailed) as ei:
        PhaseRunner().run(make_steps(log, fail_at=Phase.LINK_MIGRATION.value,
                                     undo_fails=Phase.DP_CLONE.value))
    assert log[-6:] == ["undo link-migration", "undo double-data-planes",
                        "undo data-plane-cloning", "undo control-plane-migration",
                        "undo remote-control-plane", "undo prepare-target"]
    assert "rollback incomplete: undo of data-plane-cloning failed: OSError: undo broke" in str(ei.value)
    rec = {r.step: r for r in ei.value.records}
    assert rec["data-plane-cloning"].status is Status.UNDO_FAILED


def test_a_failing_undo_of_the_failed_step_is_reported() -> None:
    log: list[str] = []
    with pytest.raises(MigrationFailed) as ei:
        PhaseRunner().run(make_steps(log, fail_at=Phase.DP_CLONE.value,
                                     undo_fails=Phase.DP_CLONE.value))
    rec = {r.step: r for r in ei.value.records}
    assert rec["data-plane-cloning"].status is Status.FAILED
    assert rec["data-plane-cloning"].undo_error == "OSError: undo broke"
    assert "rollback incomplete" in str(ei.value)
    assert log[-1] == "undo prepare-target"  # the rest was still undone


def test_nothing_is_undone_past_the_point_of_no_return() -> None:
    log: list[str] = []
    with pytest.raises(MigrationFailed) as ei:
        PhaseRunner().run(make_steps(log, fail_at=Phase.CLEANUP.value,
                                     commit_at=Phase.LINK_MIGRATION.value))
    assert not any(x.startswith("undo") for x in log)
    assert "not rolled back" in str(ei.value) and not ei.value.rolled_back


def test_records_serialise() -> None:
    recs = PhaseRunner(clock=ticking_clock(), wallclock=lambda: 5.0).run(make_steps([]))
    j = recs[0].to_json()
    assert j == {"step": "prepare-target", "phase": "prepare-target", "status": "done",
                 "seconds": 1.0, "details": {"n": 1}, "error": None, "undo_error": None,
                 "started_at": 5.0, "ended_at": 5.0}


def test_records_carry_wall_clock_start_and_end_for_latency_windows() -> None:
    from vroom.phases import phase_windows

    wall = itertools.count(1000)
    runner = PhaseRunner(clock=ticking_clock(), wallclock=lambda: float(next(wall)))
    recs = runner.run(make_steps([]))
    # each step: started_at, then ended_at, from the wall clock (epoch seconds)
    assert [(r.started_at, r.ended_at) for r in recs] == [(1000.0 + 2 * i, 1001.0 + 2 * i)
                                                          for i in range(len(PHASES))]
    assert recs[0].to_json()["started_at"] == 1000.0 and recs[0].to_json()["ended_at"] == 1001.0
    w = phase_windows(recs)
    assert w[0] == ("prepare-target", 1000.0, 1001.0) and len(w) == len(PHASES)
    assert phase_windows(recs, by="phase")[-1][0] == Phase.CLEANUP.value
    with pytest.raises(ValueError):
        phase_windows(recs, by="nope")


def test_a_failed_step_has_an_end_time_and_steps_never_run_have_no_window() -> None:
    from vroom.phases import phase_windows

    runner = PhaseRunner()
    with pytest.raises(MigrationFailed) as ei:
        runner.run(make_steps([], fail_at=Phase.DP_CLONE.value))
    recs = ei.value.records
    failed = next(r for r in recs if r.status is Status.FAILED)
    assert failed.started_at is not None and failed.ended_at >= failed.started_at
    assert [s for s, _, _ in phase_windows(recs)] == [p.value for p in PHASES[:4]]
