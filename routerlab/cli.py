"""`routerlab`: the one command (run, bench, cli, te, doctor, clean).

Only this module (and the interactive lab) prints; library code logs."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from routerlab import registry, systems
from routerlab.errors import UserError

log = logging.getLogger("routerlab")
console = Console()
err_console = Console(stderr=True)


def _setup_logging(verbose: int, log_file: Path | None = None) -> None:
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    console_level = logging.WARNING - 10 * min(verbose, 2)
    h = RichHandler(console=err_console, show_path=False, show_time=verbose > 0)
    h.setLevel(console_level)
    root.addHandler(h)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(log_file)
        fh.setLevel(logging.DEBUG)
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(fh)
    for noisy in ("pyroute2", "matplotlib", "kazoo", "os_ken", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise UserError(f"{what} needs root (namespaces, veths, OVS): run it with sudo")


def _default_out(name: str) -> Path:
    return Path("results") / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"


# ----------------------------------------------------------------------------- run / bench
def cmd_run(args: argparse.Namespace) -> int:
    from routerlab.experiments import BENCHMARKS, EXPERIMENTS, load_all, parse_option
    from routerlab.runner import run_experiments

    load_all()
    table = BENCHMARKS if args.kind == "bench" else EXPERIMENTS
    if args.name == "list":
        t = Table("name", "description", "--set KEY=VALUE", title=f"routerlab {args.kind} NAME")
        for e in table.values():
            t.add_row(e.name, e.description, "\n".join(f"{k}: {h}" for k, h in e.options.items()))
        console.print(t)
        return 0
    if args.name == "all" and args.kind == "run":
        names = [e.name for e in table.values() if e.headline]
    else:
        names = [n for n in args.name.split(",") if n]
        unknown = [n for n in names if n not in table]
        if unknown or not names:
            known = ", ".join(sorted(table)) or "none"
            raise UserError(f"unknown {args.kind} {','.join(unknown) or args.name!r} "
                            f"(known: {known}; `routerlab {args.kind} list`)")
    options = dict(parse_option(s) for s in args.set)
    for key in options:
        if not any(key in table[n].options for n in names):
            declared = sorted({k for n in names for k in table[n].options})
            raise UserError(f"--set {key}: {args.name} has no such option (known: "
                            f"{', '.join(declared) or 'none'}; `routerlab {args.kind} list`)")
    if args.kind == "run" or any(n != "te" for n in names):
        _require_root(f"routerlab {args.kind}")
    out = Path(args.out) if args.out else _default_out(args.name)
    return run_experiments(table, names, out, quick=args.quick, console=console,
                           single=len(names) == 1 and args.name != "all", label=args.name,
                           options=options)


# ----------------------------------------------------------------------------- cli
def cmd_cli(args: argparse.Namespace) -> int:
    _require_root("routerlab cli")
    from routerlab.lab import run_lab

    return run_lab(args.topology, prefix=args.prefix, console=console, script=args.script)


# ----------------------------------------------------------------------------- doctor
def cmd_doctor(args: argparse.Namespace) -> int:
    from routerlab.doctor import run_checks

    checks = run_checks(refresh=args.refresh)
    t = Table("component", "status", "detail", "what to do", title="routerlab doctor")
    style = {"ok": "green", "missing": "red", "warn": "yellow"}
    for c in checks:
        t.add_row(c.component, f"[{style.get(c.status, 'white')}]{c.status}[/]", c.detail, c.action or "")
    console.print(t)
    required_missing = [c for c in checks if c.status == "missing" and c.required]
    return 1 if required_missing else 0


# ----------------------------------------------------------------------------- clean
def cmd_clean(args: argparse.Namespace) -> int:
    if args.dry_run:
        res = list(registry.all_live_resources())
        for r in res:
            console.print(f"{r['kind']:8} {r['name']}" + (f" (pid {r['pid']})" if "pid" in r else ""))
        console.print(f"{len(res)} routerlab resources")
        return 0
    _require_root("routerlab clean")
    rep = registry.clean(stale_only=args.stale)
    if rep.total == 0 and not rep.errors:
        console.print("nothing to remove")
    else:
        for kind, names in rep.removed.items():
            if names:
                plural = {"process": "processes", "netns": "namespaces", "dir": "directories"}.get(kind, kind + "s")
                console.print(f"removed {len(names)} {plural}: "
                              f"{' '.join(names[:20])}{' ...' if len(names) > 20 else ''}")
    for e in rep.errors:
        err_console.print(f"routerlab: could not remove {e}")
    return 1 if rep.errors else 0


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="routerlab", description=(
        "routerlab: VROOM, VERB and B4 on real daemons, Open vSwitch and CRIU in Mininet"))
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for kind, help_ in (("run", "run an experiment (NAME, `all`, or `list`)"),
                        ("bench", "run a benchmark (NAME or `list`)")):
        sp = sub.add_parser(kind, help=help_)
        sp.add_argument("name", metavar="NAME")
        sp.add_argument("--out", help="results directory (default results/<time>-NAME)")
        sp.add_argument("--quick", action="store_true", help="shorter variant (sizes stated in the report)")
        sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an option of the experiment (repeatable; a,b,c for a list; "
                             "`routerlab %s list` names them)" % kind)
        sp.set_defaults(func=cmd_run, kind=kind)

    sp = sub.add_parser("cli", help="build a topology and open the interactive Mininet CLI")
    sp.add_argument("topology", help="topology file or shipped name (ring, abilene, bgp-mixed, ...)")
    sp.add_argument("--prefix", default="rl-", help="prefix of namespace and bridge names (default rl-)")
    sp.add_argument("--script", help="run CLI commands from this file instead of interactively")
    sp.set_defaults(func=cmd_cli)

    sp = sub.add_parser("doctor", help="check every component routerlab needs")
    sp.add_argument("--refresh", action="store_true", help="re-run cached feature probes (CRIU)")
    sp.set_defaults(func=cmd_doctor)

    sp = sub.add_parser("clean", help="remove everything routerlab created (and nothing else)")
    sp.add_argument("--dry-run", action="store_true", help="list what would be removed")
    sp.add_argument("--stale", action="store_true", help="only resources of runs that are no longer alive")
    sp.set_defaults(func=cmd_clean)

    systems.add_cli(sub)  # the installed systems' own subcommands (B4's `te`)
    return p


def unwind_on_signals() -> None:
    """SIGTERM and SIGHUP behave like Ctrl-C in this process: KeyboardInterrupt unwinds it,
    stopping daemons and removing what it made (the CLI's runs; the test suite's fixtures).
    SIGINT too: a process started in the background by a non-interactive shell (nohup ... &,
    CI scripts) inherits SIGINT ignored, and a `kill -INT` did nothing."""
    main_pid = os.getpid()

    def _interrupt(signum: int, _frame) -> None:
        if os.getpid() != main_pid:
            # a forked helper (pyroute2 forks for namespace sockets) just dies as usual
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    unwind_on_signals()
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        err_console.print(f"routerlab: error: {e}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err_console.print("routerlab: interrupted; cleaning up")
        registry.clean_current_session()
        return 130


if __name__ == "__main__":
    sys.exit(main())
