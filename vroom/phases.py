"""The migration phase state machine: run steps in order, time each, roll back on failure.

A migration is a list of `Step`s, each in one of the paper's phases, with an action and the
action that undoes it. `PhaseRunner.run` executes them in order and records a
`PhaseRecord` per step (seconds, details the step returned, and when it started and ended
in epoch seconds: ``started_at``/``ended_at``, to line phases up with probe packets;
`phase_windows` turns records into the (label, start, end) windows that
`routerlab.traffic.latency_in_windows` takes). If a step raises, its own undo
runs first (undos must accept a half-done step), then the steps already done are undone in
reverse order (each undo is attempted even if an earlier one failed), and
`MigrationFailed` is raised saying which step failed, why, and how the rollback went. A
step marked ``commit`` is the point of no return: after it, a failing step is reported but
nothing before it is undone (the migration has in effect happened).
"""
from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


class Phase(str, enum.Enum):  # not StrEnum: that would change str(Phase.X)
    """The phases of a VROOM migration, in order."""

    PREPARE = "prepare-target"
    REMOTE_CP = "remote-control-plane"
    CP_MIGRATION = "control-plane-migration"
    DP_CLONE = "data-plane-cloning"
    DOUBLE_DP = "double-data-planes"
    LINK_MIGRATION = "link-migration"
    CLEANUP = "cleanup"


class Status(str, enum.Enum):  # not StrEnum (as Phase)
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"
    ROLLED_BACK = "rolled-back"
    UNDO_FAILED = "undo-failed"


@dataclass
class Step:
    """One step: `do()` may return a dict of details (timings, counts) for the record."""

    name: str
    phase: Phase
    do: Callable[[], dict[str, Any] | None]
    undo: Callable[[], None] | None = None
    commit: bool = False  # the point of no return: nothing before it is undone afterwards


@dataclass
class PhaseRecord:
    step: str
    phase: Phase
    status: Status = Status.PENDING
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    undo_error: str | None = None
    started_at: float | None = None  # epoch seconds (time.time()) when the step began
    ended_at: float | None = None  # ... and when it ended (done or failed)

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "phase": self.phase.value, "status": self.status.value,
                "seconds": round(self.seconds, 4), "details": self.details,
                "error": self.error, "undo_error": self.undo_error,
                "started_at": self.started_at, "ended_at": self.ended_at}


def phase_windows(records: list[PhaseRecord], *, by: str = "step") -> list[tuple[str, float, float]]:
    """(label, start, end) in epoch seconds of every step that ran, labelled by its step
    name (``by="step"``) or its phase's name (``by="phase"``: steps of one phase share the
    label), in order; steps that never started are left out. Add the whole move with
    ``("migration", windows[0][1], windows[-1][2])`` when needed."""
    if by not in ("step", "phase"):
        raise ValueError(f"by must be 'step' or 'phase', not {by!r}")
    return [(r.step if by == "step" else r.phase.value, r.started_at, r.ended_at)
            for r in records if r.started_at is not None and r.ended_at is not None]


class MigrationFailed(RuntimeError):
    """A step failed; `records` tell what ran, what failed and how the rollback went."""

    def __init__(self, step: str, phase: Phase, cause: BaseException,
                 records: list[PhaseRecord], rolled_back: bool):
        self.step, self.phase, self.cause = step, phase, cause
        self.records = records
        self.rolled_back = rolled_back
        undo_errors = [r for r in records if r.undo_error]
        if not rolled_back:
            how = "past the point of no return: not rolled back"
        elif undo_errors:
            how = "rollback incomplete: " + "; ".join(
                f"undo of {r.step} failed: {r.undo_error}" for r in undo_errors)
        else:
            how = "rolled back"
        msg = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        super().__init__(f"step {step} ({phase.value}) failed: {msg}; {how}")


@dataclass
class PhaseRunner:
    """Runs steps with timing, logging and rollback. `clock` is injectable for tests."""

    label: str = "migration"
    clock: Callable[[], float] = time.monotonic
    wallclock: Callable[[], float] = time.time  # for the records' started_at/ended_at
    records: list[PhaseRecord] = field(default_factory=list)

    def run(self, steps: list[Step]) -> list[PhaseRecord]:
        self.records = [PhaseRecord(s.name, s.phase) for s in steps]
        done: list[int] = []
        committed = False
        for i, (s, rec) in enumerate(zip(steps, self.records)):
            log.info("%s: %s (%s)", self.label, s.name, s.phase.value)
            rec.started_at = self.wallclock()
            t0 = self.clock()
            try:
                details = s.do() or {}
            except BaseException as e:
                rec.seconds = self.clock() - t0
                rec.ended_at = self.wallclock()
                rec.status = Status.FAILED
                rec.error = f"{type(e).__name__}: {e}"
                log.error("%s: %s failed after %.3f s: %s", self.label, s.name, rec.seconds, e)
                if not committed:
                    self._undo_failed(s, rec)
                    self._rollback(steps, done)
                raise MigrationFailed(s.name, s.phase, e, self.records,
                                      rolled_back=not committed) from e
            rec.seconds = self.clock() - t0
            rec.ended_at = self.wallclock()
            rec.status = Status.DONE
            rec.details = dict(details)
            log.info("%s: %s done in %.3f s %s", self.label, s.name, rec.seconds,
                     rec.details or "")
            done.append(i)
            if s.commit:
                committed = True
        return self.records

    def _undo_failed(self, s: Step, rec: PhaseRecord) -> None:
        """Undo what the failed step did before it failed (its status stays FAILED)."""
        if s.undo is None:
            return
        log.warning("%s: undoing the failed %s", self.label, s.name)
        try:
            s.undo()
        except BaseException as e:
            rec.undo_error = f"{type(e).__name__}: {e}"
            log.error("%s: undo of the failed %s failed: %s", self.label, s.name, e)

    def _rollback(self, steps: list[Step], done: list[int]) -> None:
        for i in reversed(done):
            s, rec = steps[i], self.records[i]
            if s.undo is None:
                rec.status = Status.ROLLED_BACK
                continue
            log.warning("%s: undoing %s", self.label, s.name)
            try:
                s.undo()
                rec.status = Status.ROLLED_BACK
            except BaseException as e:  # keep undoing the rest
                rec.status = Status.UNDO_FAILED
                rec.undo_error = f"{type(e).__name__}: {e}"
                log.error("%s: undo of %s failed: %s", self.label, s.name, e)

    def seconds(self, phase: Phase) -> float:
        return sum(r.seconds for r in self.records if r.phase is phase)
