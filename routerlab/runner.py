"""Running experiments: progress display, isolation of failures, cleanup, combined report."""
from __future__ import annotations

import fcntl
import io
import logging
import os
import re
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.measure import Measurement
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from routerlab import registry
from routerlab.errors import UserError
from routerlab.experiments import Experiment, RunContext
from routerlab.report import (Result, fmt, machine_description, results_table, run_time, save_result,
                              write_json)

log = logging.getLogger(__name__)

LOCK_PATH = registry.STATE_DIR / "run.lock"


class RunLock:
    """One `routerlab run` at a time: two would fight over CPU and skew each other's numbers."""

    def __init__(self, path: Path = LOCK_PATH):
        self.path = path
        self.f: TextIO | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = self.f = open(self.path, "a+")  # held open (and locked) until __exit__
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise UserError(f"another routerlab run is in progress ({holder}); "
                            "wait for it or stop it") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}")
        f.flush()
        return self

    def __exit__(self, *exc) -> None:
        if self.f:
            fcntl.flock(self.f, fcntl.LOCK_UN)
            self.f.close()


def run_one(exp: Experiment, out_dir: Path, quick: bool, progress_fn, *,
            part_of_all: bool = False, options: dict | None = None) -> Result:
    """Run one experiment with the `options` it declares; any exception becomes a failed
    Result (the others go on)."""
    given = {k: v for k, v in (options or {}).items() if k in exp.options}
    ctx = RunContext(out_dir=out_dir, quick=quick, progress=progress_fn, part_of_all=part_of_all,
                     options=dict(given))
    out_dir.mkdir(parents=True, exist_ok=True)
    fh = logging.FileHandler(out_dir / "run.log")
    fh.setLevel(logging.DEBUG)
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(fh)
    t0 = time.monotonic()
    try:
        result = exp.func(ctx)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # one experiment's failure must not lose the others' results
        log.error("%s failed: %s", exp.name, e)
        log.debug("%s", traceback.format_exc())
        result = Result(experiment=exp.name, ok=False, error=f"{type(e).__name__}: {e}")
    finally:
        leftover = registry.clean_current_session()
        if leftover.total:
            log.warning("%s left %d resources; removed them", exp.name, leftover.total)
        logging.getLogger().removeHandler(fh)
        fh.close()
    result.raw.setdefault("elapsed_s", round(time.monotonic() - t0, 2))
    if given:  # what `--set` changed, so the results say how they were made
        result.raw.setdefault("options", given)
    save_result(result, out_dir)
    return result


class ProgressLines:
    """Progress where no terminal is attached (CI logs, a pipe, ``| tee``): one plain line per
    step with the time since the start, e.g. ``[  2:13] vroom-maintenance: migrating NYCM ->
    NY2 (40%)``. A live display would print nothing until the end there.

    A step that only updates the previous one (the same text but for its numbers, e.g.
    "converging: 3/12 adjacencies" polled every 0.2 s) is printed at most every
    `min_interval` seconds; any other message is printed at once."""

    def __init__(self, console: Console, *, min_interval: float = 2.0,
                 clock: Callable[[], float] = time.monotonic):
        self.console = console
        self.min_interval = min_interval
        self.clock = clock
        self.t0 = clock()
        self._last: dict[str, tuple[str, float]] = {}  # who -> (message shape, when printed)

    def elapsed(self) -> str:
        m, s = divmod(int(self.clock() - self.t0), 60)
        return f"{m:3d}:{s:02d}"

    def line(self, who: str, message: str) -> None:
        """Print one line now (no throttling)."""
        self.console.print(f"[{self.elapsed()}] {who}: {message}", markup=False, highlight=False,
                           soft_wrap=True, emoji=False)
        self._last[who] = (_shape(message), self.clock())

    def step(self, who: str, message: str, fraction: float | None = None) -> None:
        """A progress report; repeated updates of one step are thinned out."""
        message = str(message)
        text = message if fraction is None else f"{message} ({fraction:.0%})"
        last = self._last.get(who)
        if last and last[0] == _shape(message) and self.clock() - last[1] < self.min_interval:
            return
        self.line(who, text)


def _shape(message: str) -> str:
    """A message without its numbers: two reports of one step have the same shape."""
    return re.sub(r"\d+(?:[.,]\d+)*", "#", message)


@contextmanager
def _progress(console: Console, names: list[str], label: str,
              single: bool) -> Iterator[tuple[Callable, Callable]]:
    """Yields ``start(name) -> report(msg, frac=None)`` and ``done(name, ok)``: a live
    display on a terminal, plain timestamped lines anywhere else."""
    if not console.is_terminal:
        lines = ProgressLines(console)
        count = {"n": 0}
        starts: dict[str, float] = {}

        def start(name: str) -> Callable[..., None]:
            count["n"] += 1
            starts[name] = lines.clock()
            lines.line(name, "starting" + ("" if single else f" ({count['n']}/{len(names)} of {label})"))
            return lambda msg, frac=None, _n=name: lines.step(_n, msg, frac)

        def done(name: str, ok: bool) -> None:
            took = int(lines.clock() - starts.get(name, lines.t0))
            lines.line(name, f"{'ok' if ok else 'FAILED'} after {took // 60}:{took % 60:02d}")

        yield start, done
        return

    with Progress(SpinnerColumn(), TextColumn("[bold]{task.fields[exp]}[/]"),
                  BarColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        overall = progress.add_task("", total=len(names), exp=label) if not single else None
        tasks: dict[str, TaskID] = {}

        def start(name: str) -> Callable[..., None]:
            task = tasks[name] = progress.add_task("starting", total=1.0, exp=name)

            def report(msg: str, frac: float | None = None, _t=task) -> None:
                if frac is None:
                    progress.update(_t, description=msg[:70])
                else:
                    progress.update(_t, description=msg[:70], completed=frac)

            return report

        def done(name: str, ok: bool) -> None:
            progress.update(tasks[name], completed=1.0,
                            description="[green]ok[/]" if ok else "[red]failed[/]")
            if overall is not None:
                progress.advance(overall)

        yield start, done


def run_experiments(table: dict[str, Experiment], names: list[str], out: Path, *, quick: bool,
                    console: Console, single: bool, label: str = "all",
                    options: dict | None = None) -> int:
    """Run experiments in sequence with a progress display; write each one's results and,
    for several, a combined report. `options` (of `--set`) go to the experiments that
    declare them. Returns 0 when every experiment met its goals."""
    results: list[Result] = []
    with RunLock(), _progress(console, names, label, single) as (start, done):
        for name in names:
            exp = table[name]
            report = start(name)
            exp_dir = out if single else out / name
            res = run_one(exp, exp_dir, quick, report, part_of_all=label == "all" and not single,
                          options=options)
            results.append(res)
            done(name, res.summary()["ok"])
    _print_summary(console, results, out)
    if not single:
        write_combined_report(results, out)
    return 0 if all(r.summary()["ok"] for r in results) else 1


def _print_summary(console: Console, results: list[Result], out: Path) -> None:
    t = Table("experiment", "metric", "paper", "ours", "goal", "met", title=f"results in {out}")
    for r in results:
        if r.error:
            t.add_row(r.experiment, "[red]failed[/]", "", "", r.error[:60], "[red]no[/]")
        for m in r.metrics:
            unit = f" {m.unit}" if m.unit else ""
            t.add_row(r.experiment, m.label, "-" if m.paper is None else f"{fmt(m.paper)}{unit}",
                      f"{fmt(m.ours)}{unit}", m.goal or "-", "[green]yes[/]" if m.met else "[red]no[/]")
    total_min, _ = run_time([r.summary() for r in results])
    t.caption = f"run time {total_min:.1f} min on {machine_description()}"
    print_table(console, t)


def print_table(console: Console, table: Table) -> None:
    """Print `table`; where no terminal is attached (a log, a pipe) at its natural width,
    not squeezed into the 80 columns rich assumes there, which wraps every cell."""
    if console.is_terminal:
        console.print(table)
        return
    width = Measurement.get(console, console.options.update(max_width=NATURAL_MAX), table).maximum
    if table.caption:
        width = max(width, len(str(table.caption)))
    wide = Console(file=io.StringIO(), width=max(width, console.width), force_terminal=False,
                   color_system=None, highlight=False, emoji=False)
    with wide.capture() as cap:
        wide.print(table)
    # rich pads the centred title and caption to the full width: no trailing blanks in a log
    console.file.write("".join(ln.rstrip() + "\n" for ln in cap.get().splitlines()))
    console.file.flush()


NATURAL_MAX = 1000  # columns: a cap on "natural width", far above any table printed here


def write_combined_report(results: list[Result], out: Path) -> None:
    """``out/report.md`` and ``out/summary.json`` over several experiments."""
    summaries = [r.summary() for r in results]
    write_json(out / "summary.json", {"machine": machine_description(), "experiments": summaries})
    total_min, times = run_time(summaries)
    lines = ["# routerlab results", "", f"Machine: {machine_description()}", "",
             f"Run time: {total_min:.1f} min ({times} min).", "",
             results_table(summaries), ""]
    for r in results:
        lines += [f"## {r.experiment}", "", f"Full report: [{r.experiment}/report.md]({r.experiment}/report.md)", ""]
        if r.error:
            lines += [f"**Failed**: `{r.error}`", ""]
        for caption, name in r.plots:
            lines += [f"![{caption}]({r.experiment}/{name})", ""]
    (out / "report.md").write_text("\n".join(lines))
