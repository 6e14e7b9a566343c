#!/usr/bin/env python3
"""Publish a `routerlab run all` result directory into the README.

    .venv/bin/python scripts/publish-results.py results/          # what `make demo` wrote

Copies every experiment's report.md, summary.json and PNG plots (and the combined report and
summary) into docs/results/, leaving other entries there (the TE benchmark's) alone, and
rewrites the README's block between the `<!-- run-all results -->` markers: the machine, the
run time per experiment and the results table, all read from the run's own files.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from routerlab.report import results_table, run_time

REPO = Path(__file__).resolve().parents[1]
BEGIN = "<!-- run-all results: written by scripts/publish-results.py -->"
END = "<!-- end of run-all results -->"
COPIED = ("report.md", "summary.json")


def publish(run_dir: Path, docs: Path) -> str:
    """Copy the run into `docs` and return the README block for it."""
    combined = json.loads((run_dir / "summary.json").read_text())
    docs.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        shutil.copy2(run_dir / name, docs / name)
    for sm in combined["experiments"]:
        src, dst = run_dir / sm["experiment"], docs / sm["experiment"]
        if dst.exists():
            shutil.rmtree(dst)
        dst.mkdir(parents=True)
        for f in src.iterdir():
            if f.name in COPIED or f.suffix == ".png":
                shutil.copy2(f, dst / f.name)
    total_min, times = run_time(combined["experiments"])
    failed = [sm["experiment"] for sm in combined["experiments"] if not sm["ok"]]
    lines = [BEGIN,
             f"Machine: {combined['machine']}. `routerlab run all` took {total_min:.1f} minutes "
             f"({times} min); "
             + (f"experiments with a goal not met: {', '.join(failed)}." if failed
                else "every goal was met."),
             "",
             results_table(combined["experiments"]),
             END]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", type=Path, help="the directory `routerlab run all --out` wrote")
    ap.add_argument("--docs", type=Path, default=REPO / "docs" / "results")
    ap.add_argument("--readme", type=Path, default=REPO / "README.md")
    a = ap.parse_args()
    if not (a.run_dir / "summary.json").is_file():
        print(f"publish-results: {a.run_dir} has no summary.json (not a `run all` directory)",
              file=sys.stderr)
        return 2
    block = publish(a.run_dir, a.docs)
    text = a.readme.read_text()
    if BEGIN not in text or END not in text:
        print(f"publish-results: {a.readme} lacks the markers {BEGIN!r} ... {END!r}", file=sys.stderr)
        return 2
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    a.readme.write_text(head + block + tail)
    print(f"published {a.run_dir} into {a.docs} and {a.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
