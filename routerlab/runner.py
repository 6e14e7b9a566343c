"""Running experiments: progress display, isolation of failures, cleanup, combined report."""
from __future__ import annotations

import fcntl
import logging
import time
import traceback
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
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
        self.f = None

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(self.path, "a+")
        try:
            fcntl.flock(self.f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.f.seek(0)
            holder = self.f.read().strip() or "another process"
            self.f.close()
            raise UserError(f"another routerlab run is in progress ({holder}); wait for it or stop it")
        self.f.seek(0)
        self.f.truncate()
        import os

        self.f.write(f"pid {os.getpid()}")
        self.f.flush()
        return self

    def __exit__(self, *exc) -> None:
        if self.f:
            fcntl.flock(self.f, fcntl.LOCK_UN)
            self.f.close()


def run_one(exp: Experiment, out_dir: Path, quick: bool, progress_fn, *,
            part_of_all: bool = False) -> Result:
    """Run one experiment; any exception becomes a failed Result (the others go on)."""
    ctx = RunContext(out_dir=out_dir, quick=quick, progress=progress_fn, part_of_all=part_of_all)
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
    save_result(result, out_dir)
    return result


def run_experiments(table: dict[str, Experiment], names: list[str], out: Path, *, quick: bool,
                    console: Console, single: bool, label: str = "all") -> int:
    """Run experiments in sequence with a progress display; write each one's results and,
    for several, a combined report. Returns 0 when every experiment met its goals."""
    results: list[Result] = []
    with RunLock(), Progress(SpinnerColumn(), TextColumn("[bold]{task.fields[exp]}[/]"),
                             BarColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                             console=console, transient=False) as progress:
        overall = progress.add_task("", total=len(names), exp=label) if not single else None
        for name in names:
            exp = table[name]
            task = progress.add_task("starting", total=1.0, exp=name)

            def report(msg: str, frac: float | None = None, _t=task) -> None:
                progress.update(_t, description=msg[:70], **({"completed": frac} if frac is not None else {}))

            exp_dir = out if single else out / name
            res = run_one(exp, exp_dir, quick, report, part_of_all=label == "all" and not single)
            results.append(res)
            progress.update(task, completed=1.0,
                            description="[green]ok[/]" if res.summary()["ok"] else "[red]failed[/]")
            if overall is not None:
                progress.advance(overall)
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
    console.print(t)


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
