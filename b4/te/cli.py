"""``routerlab te solve|generate``: the TE library from the command line.

The lead's ``routerlab`` CLI calls :func:`add_te_parser`; ``python -m b4.te.cli`` runs the
same commands standalone through :func:`main`. Bad input exits 2 with one line on stderr
(``routerlab: error: FILE: problem``).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any
from collections.abc import Callable, Sequence

from routerlab.errors import UserError

from b4.te.problem import Problem, ProblemError, check_max_tunnels, check_quantum, load_problem

__all__ = ["ProblemError", "add_te_parser", "main", "dump_problem"]

log = logging.getLogger(__name__)

_ROWS = 40  # table rows shown before eliding (the JSON output always has everything)
QUANTIZED = ("b4", "b4r")  # the algorithms --quantum applies to


def add_te_parser(subparsers: Any) -> None:
    """Add ``te`` with sub-commands ``solve`` and ``generate`` to an argparse subparsers object."""
    te = subparsers.add_parser("te", help="B4 traffic engineering: solve TE problems, generate instances",
                               description="B4 traffic engineering (tunnel groups, quantization, LP baselines).")
    _add_commands(te.add_subparsers(dest="te_command", metavar="{solve,generate}", required=True))


def _add_commands(sub: Any) -> None:
    from b4.te.generate import DEFAULT_CAPACITY, DEFAULT_LOAD
    from b4.te.solve import ALGORITHMS

    s = sub.add_parser("solve", help="allocate a TE problem (JSON or YAML)",
                       description="Allocate bandwidth to flow groups. b4: B4's tunnel-group generation + "
                                   "quantization (the paper's); b4r: B4 with re-routing + quantization; "
                                   "exact: exact weighted max-min (fast: merged flow groups, warm-started "
                                   "LPs); lp: exact max-min by the plain iterative LP (the old baseline, "
                                   "slower); swan: SWAN's approximate max-min; shortest: cheapest tunnel only.")
    s.add_argument("problem", type=Path, help="problem file (.json, .yaml)")
    s.add_argument("--algorithm", choices=ALGORITHMS, default="b4", help="default: b4")
    s.add_argument("--quantum", type=float, default=None,
                   help="split quantum for b4 and b4r, 1/n or 0 for unquantized (default: the problem's, "
                        "else 0.25)")
    s.add_argument("--max-tunnels", type=int, default=None,
                   help="tunnels per flow group (default: the problem's, else 4)")
    s.add_argument("--alpha", type=float, default=2.0, help="SWAN's geometric factor (default 2)")
    s.add_argument("--json", action="store_true", help="print the allocation as JSON")
    s.set_defaults(func=_solve_command)

    g = sub.add_parser("generate", help="write a TE problem from topohub data or the B4-like WAN",
                       description="Generate a TE problem. b4-like: 16 sites, 46 directed edges, all 240 "
                                   "site pairs; zoo NAME: Topology Zoo graph with gravity demands; "
                                   "sndlib NAME: SNDlib graph with its own demand matrix. Demands are scaled "
                                   "so that cheapest-path routing loads the used edges to --load on average.")
    g.add_argument("source", choices=("b4-like", "zoo", "sndlib"))
    g.add_argument("name", nargs="?", help="topology name for zoo/sndlib (e.g. TataNld, germany50)")
    g.add_argument("-o", "--output", default="-", help="output file (.json or .yaml); - for stdout")
    g.add_argument("--flow-groups", type=int, default=2700, help="b4-like: number of flow groups (default 2700)")
    g.add_argument("--pairs", type=int, default=1500,
                   help="zoo: site pairs with traffic, a seeded sample (0: all pairs; default 1500)")
    g.add_argument("--flow-groups-per-pair", type=int, default=1, help="zoo: flow groups per site pair")
    g.add_argument("--load", type=float, default=DEFAULT_LOAD,
                   help=f"oversubscription: mean cheapest-path utilization of used edges (default {DEFAULT_LOAD})")
    g.add_argument("--capacity", type=float, default=DEFAULT_CAPACITY,
                   help=f"zoo/sndlib: capacity per direction of every link (default {DEFAULT_CAPACITY:g})")
    g.add_argument("--seed", type=int, default=1)
    g.set_defaults(func=_generate_command)


def _guard(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn a user error (ProblemError: a bad problem file or option) into exit code 2 and
    one line on stderr."""

    def run(args: argparse.Namespace) -> int:
        from b4.te.tunnel_lp import LPError

        try:
            return fn(args)
        except UserError as e:
            print(f"routerlab: error: {' '.join(str(e).split())}", file=sys.stderr)
            return 2
        except LPError as e:
            print(f"routerlab: error: LP solver failed: {e}", file=sys.stderr)
            return 1

    run.__name__ = fn.__name__
    run.__doc__ = fn.__doc__
    return run


@_guard
def _solve_command(args: argparse.Namespace) -> int:
    """``te solve``."""
    from b4.te.solve import solve

    problem = load_problem(args.problem)
    quantum = None if args.quantum is None else check_quantum(args.quantum, "--quantum")
    max_tunnels = None if args.max_tunnels is None else check_max_tunnels(args.max_tunnels, "--max-tunnels")
    if not args.alpha > 1:
        raise ProblemError(f"--alpha must be > 1, got {args.alpha}")
    if args.algorithm not in QUANTIZED and quantum:
        log.warning("--quantum applies to b4 and b4r only; %s is reported unquantized", args.algorithm)
    alloc = solve(problem, args.algorithm, quantum=quantum, max_tunnels=max_tunnels, alpha=args.alpha)
    if args.json:
        json.dump(alloc.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_allocation(alloc, str(args.problem))
    return 0


@_guard
def _generate_command(args: argparse.Namespace) -> int:
    """``te generate``."""
    from b4.te import generate

    if args.source in ("zoo", "sndlib") and not args.name:
        names = ", ".join(_topohub_names(args.source))
        raise ProblemError(f"te generate {args.source}: give a topology name, one of: {names}")
    for opt in ("flow_groups", "flow_groups_per_pair"):
        if getattr(args, opt) < 1:
            raise ProblemError(f"--{opt.replace('_', '-')} must be >= 1")
    if args.pairs < 0:
        raise ProblemError(f"--pairs must be >= 0 (0: all pairs), got {args.pairs}")
    if args.capacity < 0:
        raise ProblemError(f"--capacity must be >= 0, got {args.capacity}")
    if args.source == "b4-like":
        problem = generate.b4_like(args.flow_groups, seed=args.seed, load=args.load)
    elif args.source == "zoo":
        if args.name not in _topohub_names("zoo"):
            raise ProblemError(f"no Topology Zoo topology {args.name!r} in topohub")
        problem = generate.from_zoo(args.name, pairs=args.pairs or None, flow_groups_per_pair=args.flow_groups_per_pair,
                                    seed=args.seed, load=args.load, capacity=args.capacity)
    else:
        if args.name not in _topohub_names("sndlib"):
            raise ProblemError(f"no SNDlib instance {args.name!r} in topohub")
        problem = generate.from_sndlib(args.name, seed=args.seed, load=args.load, capacity=args.capacity)
    text = dump_problem(problem, yaml_format=str(args.output).endswith((".yaml", ".yml")))
    summary = (f"{problem.name}: {len(problem.sites)} sites, {len(problem.edges)} edges, "
               f"{len(problem.flow_groups)} flow groups, total demand {problem.total_demand:,.1f}")
    if args.output == "-":
        sys.stdout.write(text)
        print(summary, file=sys.stderr)
    else:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"wrote {out}: {summary}")
    return 0


def _topohub_names(kind: str) -> list[str]:
    import importlib.resources

    import topohub

    folder = importlib.resources.files(topohub) / "data" / ("topozoo" if kind == "zoo" else "sndlib")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def dump_problem(problem: Problem, yaml_format: bool = False) -> str:
    """A problem as text: JSON with one edge or flow group per line, or YAML."""
    d = problem.to_dict()
    if yaml_format:
        import yaml

        return yaml.safe_dump(d, sort_keys=False)
    lines = ["{"]
    items = list(d.items())
    for i, (k, v) in enumerate(items):
        end = "," if i < len(items) - 1 else ""
        if isinstance(v, list) and v and isinstance(v[0], dict):
            lines.append(f"  {json.dumps(k)}: [")
            lines += [f"    {json.dumps(x)}{',' if j < len(v) - 1 else ''}" for j, x in enumerate(v)]
            lines.append(f"  ]{end}")
        else:
            lines.append(f"  {json.dumps(k)}: {json.dumps(v)}{end}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _num(v: float) -> str:
    """A number in a table: 3 decimals at most, thousands separated, tiny ones in e-notation."""
    if v != 0 and abs(v) < 0.01:
        return f"{v:.2e}"
    return f"{v:,.3f}".rstrip("0").rstrip(".") if abs(v) < 1000 else f"{v:,.0f}"


def _print_allocation(alloc: Any, source: str) -> None:
    from rich.console import Console
    from rich.table import Table

    inst = alloc.instance
    con = Console()
    demand = float(inst.fg_demand.sum())
    q = f", quantum {alloc.quantum:g}" if alloc.algorithm in QUANTIZED else ""
    con.print(f"[bold]{alloc.algorithm}[/bold] on {source}: throughput {_num(alloc.throughput)} of demand "
              f"{_num(demand)} ({100 * alloc.throughput / demand if demand else 100:.1f}%), "
              f"{int(alloc.satisfied.sum())}/{inst.num_flow_groups} flow groups satisfied{q}, "
              f"runtime {alloc.runtime_s * 1000:.1f} ms (tunnels {inst.tunnels_runtime_s * 1000:.1f} ms)")
    if alloc.unquantized is not None:
        con.print(f"unquantized throughput {_num(alloc.unquantized.throughput)}")

    order = sorted(range(inst.num_flow_groups), key=lambda g: (alloc.fair_shares[g], g))
    t = Table(title="Flow groups (lowest fair share first)")
    for col in ("flow group", "src -> dst", "demand", "rate", "fair share", "satisfied", "tunnel group (weight)"):
        t.add_column(col, justify="right" if col in ("demand", "rate", "fair share") else "left")
    for g in order[:_ROWS]:
        fa = alloc.flow_group(g)
        tg = "  ".join(f"{'->'.join(s.path)} {_num(s.weight)}" for s in fa.tunnels)
        t.add_row(fa.name, f"{fa.src} -> {fa.dst}", _num(fa.demand), _num(fa.rate), _num(fa.fair_share),
                  "yes" if fa.satisfied else "no", tg)
    con.print(t)
    if len(order) > _ROWS:
        con.print(f"... {len(order) - _ROWS} more flow groups (use --json for all)")

    util = alloc.utilization
    edges = sorted(range(inst.num_edges), key=lambda e: (-util[e], e))
    t = Table(title="Edges (most utilized first)")
    for col in ("edge", "capacity", "load", "utilization"):
        t.add_column(col, justify="left" if col == "edge" else "right")
    for e in edges[:_ROWS]:
        ed = inst.problem.edges[e]
        t.add_row(f"{ed.src} -> {ed.dst}", _num(ed.capacity), _num(float(alloc.edge_loads[e])), f"{100 * util[e]:.1f}%")
    con.print(t)
    if len(edges) > _ROWS:
        con.print(f"... {len(edges) - _ROWS} more edges")

    if alloc.algorithm == "b4" and alloc.steps:
        t = Table(title="Tunnel-group generation: events")
        for col in ("fair share", "frozen edges", "moved", "stopped", "satisfied"):
            t.add_column(col, justify="right" if col == "fair share" else "left")
        for s in alloc.steps_json()[:_ROWS]:
            t.add_row(_num(s["fair_share"]), ", ".join(f"{a}->{b}" for a, b in s["frozen_edges"]),
                      _names(s.get("moved", {})), _names(s.get("stopped", [])), _names(s.get("satisfied", [])))
        con.print(t)


def _names(xs: Any, limit: int = 6) -> str:
    xs = list(xs)
    return ", ".join(xs[:limit]) + (f" (+{len(xs) - limit})" if len(xs) > limit else "")


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point: ``python -m b4.te.cli solve|generate ...``."""
    parser = argparse.ArgumentParser(prog="routerlab te", description="B4 traffic engineering")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    _add_commands(parser.add_subparsers(dest="te_command", metavar="{solve,generate}", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
