"""Experiment results: summary.json, raw JSON, tables, PNG plots and a markdown report.

Every experiment writes ``DIR/summary.json``::

    {"experiment": NAME, "ok": bool,
     "metrics": [{"id", "label", "unit", "ours", "paper", "goal", "met"}, ...]}

beside its ``report.md``, plots and raw JSON; the report's headline table is rendered from
the summary so the two can never disagree.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import platform
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class Metric:
    """One headline number: ours beside the paper's, with the goal it is judged by."""

    id: str
    label: str
    unit: str
    ours: float | int | None
    paper: float | int | None = None
    goal: str = ""
    met: bool = True

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        if isinstance(d["ours"], float) and not math.isfinite(d["ours"]):
            d["ours"] = None
        return d


@dataclass
class Result:
    """Everything one experiment run produced."""

    experiment: str
    metrics: list[Metric] = field(default_factory=list)
    ok: bool = True
    error: str | None = None
    sections: list[tuple[str, str]] = field(default_factory=list)  # (heading, markdown body)
    plots: list[tuple[str, str]] = field(default_factory=list)  # (caption, file name in out dir)
    raw: dict[str, Any] = field(default_factory=dict)  # written as raw.json

    def add_metric(self, *args: Any, **kwargs: Any) -> Metric:
        m = Metric(*args, **kwargs)
        self.metrics.append(m)
        return m

    def add_section(self, heading: str, body: str) -> None:
        self.sections.append((heading, body))

    def summary(self) -> dict[str, Any]:
        ok = self.ok and self.error is None and all(m.met for m in self.metrics)
        out: dict[str, Any] = {"experiment": self.experiment, "ok": ok,
                               "metrics": [m.to_json() for m in self.metrics]}
        if isinstance(self.raw, dict) and self.raw.get("elapsed_s") is not None:
            out["elapsed_s"] = self.raw["elapsed_s"]  # wall-clock time of the whole run
        if isinstance(self.raw, dict) and self.raw.get("options"):
            out["options"] = self.raw["options"]  # what `--set` changed
        if self.error:
            out["error"] = self.error
        return out


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write JSON atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False, default=_json_default)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _json_default(o: Any) -> Any:
    if hasattr(o, "to_json"):
        return o.to_json()
    if hasattr(o, "__dataclass_fields__"):
        return asdict(o)
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def fmt(v: Any) -> str:
    """Format a number for a table: integers plain, floats with 3 significant decimals."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if v != 0 and abs(v) < 0.01:
            return f"{v:.2e}"
        return f"{v:,.3f}".rstrip("0").rstrip(".") if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        lines.append("| " + " | ".join(fmt(c).replace("|", "\\|") for c in row) + " |")
    return "\n".join(lines)


def metrics_table(metrics: Sequence[Metric | dict[str, Any]]) -> str:
    """The headline table: what we measured beside the paper's number and the goal."""
    rows = []
    for m in metrics:
        d = m.to_json() if isinstance(m, Metric) else m
        unit = f" {d['unit']}" if d.get("unit") else ""
        rows.append((d["label"], f"{fmt(d['ours'])}{unit}",
                     "-" if d.get("paper") is None else f"{fmt(d['paper'])}{unit}",
                     d.get("goal") or "-", "yes" if d.get("met") else "**no**"))
    return markdown_table(("metric", "ours", "paper", "goal", "met"), rows)


def results_table(summaries: Sequence[dict[str, Any]]) -> str:
    """One table over several experiments' summaries: paper beside ours, per metric."""
    rows = []
    for sm in summaries:
        if not sm["metrics"]:
            rows.append((sm["experiment"], "(failed before measuring)", "-", "-", "-", "**no**"))
        for d in sm["metrics"]:
            unit = f" {d['unit']}" if d.get("unit") else ""
            rows.append((sm["experiment"], d["label"],
                         "-" if d.get("paper") is None else f"{fmt(d['paper'])}{unit}",
                         f"{fmt(d['ours'])}{unit}", d.get("goal") or "-",
                         "yes" if d.get("met") else "**no**"))
    return markdown_table(("experiment", "metric", "paper", "ours", "goal", "met"), rows)


def run_time(summaries: Sequence[dict[str, Any]]) -> tuple[float, str]:
    """Over several experiments' summaries: total wall-clock minutes and each one's
    ("ospf-ring 0.3, b4-example 0.5")."""
    times = [(sm["experiment"], (sm.get("elapsed_s") or 0.0) / 60) for sm in summaries]
    return sum(t for _, t in times), ", ".join(f"{n} {t:.1f}" for n, t in times)


def machine_description() -> str:
    """One line naming the machine the numbers were measured on."""
    try:
        cpus = os.cpu_count()
        with open("/proc/meminfo") as f:
            mem_kb = int(f.readline().split()[1])
        mem = f"{mem_kb / 1024 / 1024:.0f} GiB"
    except OSError:
        cpus, mem = os.cpu_count(), "?"
    return f"{platform.node()}: {cpus} cores, {mem}, Linux {platform.release()}, Python {platform.python_version()}"


def _option_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value).lower() if isinstance(value, bool) else str(value)


def render_report(result: Result) -> str:
    """The markdown report of one experiment."""
    s = result.summary()
    out = [f"# {result.experiment}", "",
           f"Result: **{'OK' if s['ok'] else 'FAILED'}**  ", f"Machine: {machine_description()}", ""]
    if s.get("options"):
        out += ["Options: " + " ".join(f"`--set {k}={_option_text(v)}`" for k, v in s["options"].items()), ""]
    if result.error:
        out += [f"Error: `{result.error}`", ""]
    if result.metrics:
        out += ["## Headline", "", metrics_table(result.metrics), ""]
    for heading, body in result.sections:
        out += [f"## {heading}", "", body.rstrip(), ""]
    for caption, name in result.plots:
        out += [f"![{caption}]({name})", ""]
    return "\n".join(out)


def save_result(result: Result, out_dir: str | os.PathLike) -> Path:
    """Write summary.json, raw.json and report.md for one experiment; returns the directory."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "summary.json", result.summary())
    write_json(out / "raw.json", result.raw)
    (out / "report.md").write_text(render_report(result))
    log.info("wrote %s", out / "report.md")
    return out


def plot(path: str | os.PathLike, series: dict[str, tuple[Sequence[float], Sequence[float]]],
         title: str, xlabel: str, ylabel: str, *, kind: str = "line", logx: bool = False,
         logy: bool = False) -> Path:
    """Save a simple PNG plot of named (x, y) series; ``kind`` is line, step, scatter or bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for i, (name, (xs, ys)) in enumerate(series.items()):
        if kind == "bar":
            n = len(series)
            width = 0.8 / max(n, 1)
            ax.bar([j + i * width for j in range(len(xs))], ys, width=width, label=name)
            ax.set_xticks([j + 0.4 - width / 2 for j in range(len(xs))], [str(x) for x in xs])
        elif kind == "scatter":
            ax.scatter(xs, ys, label=name, s=12)
        elif kind == "step":
            ax.step(xs, ys, where="post", label=name)
        else:
            ax.plot(xs, ys, marker="o", markersize=3, label=name)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    if len(series) > 1:
        ax.legend()
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def format_duration(seconds: float | None) -> str:
    """A duration as people read it: "1.2 s", "3 min 05 s", "2 h 03 min" ("" for None)."""
    if seconds is None:
        return ""
    s = float(seconds)
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        m, sec = divmod(int(round(s)), 60)
        return f"{m} min {sec:02d} s"
    h, rest = divmod(int(round(s)), 3600)
    return f"{h} h {rest // 60:02d} min"
