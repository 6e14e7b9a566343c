"""`routerlab run` where no terminal is attached (CI logs, `| tee`, a pipe): plain progress
lines with the elapsed time, and the summary table at its natural width. No root needed."""
from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.table import Table

from routerlab import runner
from routerlab.experiments import Experiment, RunContext
from routerlab.report import Result

LONG_GOAL = "within a factor of two of the paper's figure, measured over every one of the runs"


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def _plain() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=False, width=80), buf


def test_progress_line_has_elapsed_time_and_percentage():
    console, buf = _plain()
    clock = Clock()
    lines = runner.ProgressLines(console, clock=clock)
    clock.t += 133
    lines.step("vroom-maintenance", "migrating NYCM -> NY2", 0.4)
    assert buf.getvalue() == "[  2:13] vroom-maintenance: migrating NYCM -> NY2 (40%)\n"


def test_repeated_updates_of_one_step_are_thinned_but_new_steps_print_at_once():
    console, buf = _plain()
    clock = Clock()
    lines = runner.ProgressLines(console, clock=clock, min_interval=2.0)
    for i in range(10):  # a poll every 0.2 s for 2 s: one line, then one more after 2 s
        lines.step("ospf-ring", f"converging: {i}/12 adjacencies Full")
        clock.t += 0.2
    lines.step("ospf-ring", "converging: 11/12 adjacencies Full")
    lines.step("ospf-ring", "failing link r1-r2 for 10 s", 0.5)  # a new step: printed at once
    out = buf.getvalue().splitlines()
    assert out == ["[  0:00] ospf-ring: converging: 0/12 adjacencies Full",
                   "[  0:02] ospf-ring: converging: 11/12 adjacencies Full",
                   "[  0:02] ospf-ring: failing link r1-r2 for 10 s (50%)"]


def test_progress_text_is_not_markup_and_never_wrapped():
    console, buf = _plain()
    lines = runner.ProgressLines(console, clock=Clock())
    msg = "[red]not markup[/] " + "x" * 120
    lines.step("b4", msg)
    assert buf.getvalue() == f"[  0:00] b4: {msg}\n"


def _fake_experiment(name: str, *, fail: bool = False) -> Experiment:
    def func(ctx: RunContext) -> Result:
        ctx.step("building the ring", 0.05)
        ctx.step("measuring", 0.5)
        if fail:
            raise RuntimeError("daemon died")
        r = Result(experiment=name)
        r.add_metric("conv", "convergence time after a link failure", "s", 1.234, paper=2.0,
                     goal=LONG_GOAL, met=True)
        return r

    return Experiment(name, func, "a fake experiment")


@pytest.mark.usefixtures("runner_without_host")
def test_run_without_terminal_prints_lines_and_a_natural_width_table(tmp_path):
    console, buf = _plain()
    table = {"ospf-ring": _fake_experiment("ospf-ring"), "broken": _fake_experiment("broken", fail=True)}
    rc = runner.run_experiments(table, ["ospf-ring", "broken"], tmp_path, quick=True,
                                console=console, single=False)
    assert rc == 1
    out = buf.getvalue()
    assert "\x1b[" not in out  # no colour codes or cursor movement in a log
    lines = out.splitlines()
    assert lines[0] == "[  0:00] ospf-ring: starting (1/2 of all)"
    assert "[  0:00] ospf-ring: building the ring (5%)" in lines
    assert "[  0:00] ospf-ring: measuring (50%)" in lines
    assert "[  0:00] ospf-ring: ok after 0:00" in lines
    assert "[  0:00] broken: starting (2/2 of all)" in lines
    assert "[  0:00] broken: FAILED after 0:00" in lines
    # The table: one line per row, every cell whole, although the console is 80 columns.
    row = next(ln for ln in lines if "convergence time after a link failure" in ln)
    assert LONG_GOAL in row and "ospf-ring" in row and "1.234 s" in row and "2 s" in row
    assert len(row) > 80
    failed = next(ln for ln in lines if "RuntimeError: daemon died" in ln)
    assert "broken" in failed and "failed" in failed
    assert any("run time" in ln and "min on" in ln for ln in lines)  # caption not cut
    assert (tmp_path / "report.md").exists()


def test_single_experiment_has_no_count():
    console, buf = _plain()
    with runner._progress(console, ["ospf-ring"], "ospf-ring", single=True) as (start, done):
        report = start("ospf-ring")
        report("waiting for OSPF", None)
        done("ospf-ring", True)
    assert buf.getvalue().splitlines()[0] == "[  0:00] ospf-ring: starting"


def test_terminal_output_unchanged():
    """On a terminal the table still fits the terminal's width (rich wraps the cells)."""
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=80, color_system=None)
    t = Table("experiment", "goal")
    t.add_row("ospf-ring", LONG_GOAL)
    runner.print_table(console, t)
    assert max(len(ln) for ln in buf.getvalue().splitlines()) <= 80


def test_table_at_natural_width_without_terminal():
    console, buf = _plain()
    t = Table("experiment", "goal", title="results in /tmp/x")
    t.add_row("ospf-ring", LONG_GOAL)
    runner.print_table(console, t)
    out = buf.getvalue().splitlines()
    assert any(LONG_GOAL in ln for ln in out)
    assert len(out) == 6  # title, top border, header, separator, one row, bottom border
