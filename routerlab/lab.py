"""`routerlab cli TOPOLOGY`: the interactive lab, Mininet's CLI plus the routers' own views.

Extra commands (see `help` inside the CLI):
  routes R        R's RIB as its daemon reports it
  neighbors R     R's OSPF neighbours (state, uptime)
  sessions R      R's BGP sessions (state, uptime, connections)
  daemon R CMD    run CMD in R's own CLI (vtysh, birdc, gobgp)
  probe A B [S [R]]  a UDP probe from host A to host B for S seconds (default 3) at R
                  packets/s (default 1,000): loss, gaps, one-way latency p50/p99/max
A topology whose ``params: {system: NAME}`` names an installed system
(`routerlab.systems`) is built by that system, and its lab gets that system's commands.
"""
from __future__ import annotations

import logging
import shlex
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from mininet.cli import CLI
from rich.console import Console
from rich.table import Table

from routerlab import systems
from routerlab.errors import UserError
from routerlab.report import format_duration

log = logging.getLogger(__name__)

class LabNetwork(Protocol):
    """What the lab needs of a running network: Mininet's object for Mininet's own commands,
    and routers, hosts and probes by name (unknown names raise `UserError`)."""

    net: Any

    def router(self, name: str) -> Any: ...

    def probe(self, src: str, dst: str, seconds: float, rate_pps: int = 1000) -> Any: ...


def table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> Table:
    t = Table(*columns, title=title)
    for r in rows:
        t.add_row(*(_cell(c, r.get(c)) for c in columns))
    return t


def _cell(column: str, value: Any) -> str:
    """A table cell: durations (uptime, age, ... in seconds) as people read them."""
    if value is None:
        return ""
    if isinstance(value, float) and column in DURATION_COLUMNS:
        return format_duration(value)
    return str(value)


#: columns whose numbers are seconds
DURATION_COLUMNS = frozenset({"uptime", "age", "elapsed", "duration", "since"})


class RouterlabCLI(CLI):
    """Mininet's CLI with routerlab's commands; ``network`` is a running routerlab Network."""

    prompt = "routerlab> "

    def __init__(self, network: LabNetwork, console: Console | None = None, **kwargs: Any):
        self.network = network
        self.console = console or Console()
        super().__init__(network.net, **kwargs)

    # -- helpers --------------------------------------------------------------------------
    def _router(self, name: str):
        node = self.network.router(name)  # raises UserError for unknown names
        if node.daemon is None:
            raise UserError(f"{name} runs no routing daemon")
        return node

    def _guard(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except UserError as e:
            self.console.print(f"[red]error:[/] {e}")
        except Exception as e:  # a failing query must not end the session
            log.debug("lab command failed", exc_info=True)
            self.console.print(f"[red]error:[/] {e or type(e).__name__} (details with -vv)")

    @staticmethod
    def _as_dict(x: Any) -> dict[str, Any]:
        if isinstance(x, dict):
            return x
        if hasattr(x, "__dataclass_fields__"):
            from dataclasses import asdict

            return asdict(x)
        return dict(vars(x))

    # -- commands -------------------------------------------------------------------------
    def do_routes(self, line: str) -> None:
        """routes R: the router's RIB as its daemon reports it."""
        def run() -> None:
            r = self._router(line.strip())
            rows = [self._as_dict(x) for x in r.daemon.routes()]
            for row in rows:
                nhs = row.get("nexthops") or row.get("next_hops") or []
                row["via"] = ", ".join(
                    f"{n.get('address') or ''}{('@' + n['interface']) if n.get('interface') else ''}"
                    if isinstance(n, dict) else str(n) for n in (self._as_dict(n) for n in nhs))
            self.console.print(table(f"routes of {r.name} ({len(rows)})", rows,
                                      ["prefix", "protocol", "via", "metric"]))
        self._guard(run)

    def _status(self, line: str, query: str, what: str, cols: list[str]) -> None:
        def run() -> None:
            r = self._router(line.strip())
            rows = [self._as_dict(x) for x in getattr(r.daemon, query)()]
            if not rows:
                self.console.print(f"{r.name}: no {what}")
                return
            self.console.print(table(f"{what} of {r.name}", rows, cols))
        self._guard(run)

    def do_neighbors(self, line: str) -> None:
        """neighbors R: OSPF neighbours of R with state and uptime."""
        self._status(line, "ospf_neighbors", "OSPF neighbours",
                     ["router_id", "address", "interface", "state", "role", "uptime"])

    def do_sessions(self, line: str) -> None:
        """sessions R: BGP sessions of R with state, uptime and connection count."""
        self._status(line, "bgp_sessions", "BGP sessions",
                     ["peer", "peer_asn", "state", "uptime", "established_count", "prefixes_received"])

    def do_daemon(self, line: str) -> None:
        """daemon R COMMAND: run COMMAND in R's own CLI (vtysh, birdc or gobgp)."""
        def run() -> None:
            parts = line.strip().split(None, 1)
            if len(parts) < 2:
                raise UserError("usage: daemon R COMMAND")
            r = self._router(parts[0])
            self.console.print(r.daemon.cli(parts[1]), highlight=False, markup=False)
        self._guard(run)

    def do_probe(self, line: str) -> None:
        """probe A B [SECONDS [RATE]]: constant-rate UDP probe from host A to B (default 3 s at
        1,000 packets/s): loss, reordering, longest gap, one-way latency p50/p99/max."""
        def run() -> None:
            src, dst, seconds, rate = parse_probe_args(line)
            res = self.network.probe(src, dst, seconds, rate_pps=rate)
            self.console.print(
                f"probe {src} -> {dst}: sent {res.sent}, received {res.received}, "
                f"lost {res.lost}, reordered {res.reordered}, duplicated {res.duplicated}, "
                f"longest gap {res.max_gap_ms:.1f} ms at {res.rate_pps:.0f} packets/s; "
                f"one-way {res.latency_text()}")
        self._guard(run)


PROBE_MAX_SECONDS = 3600.0
PROBE_MAX_RATE = 1_000_000
PROBE_USAGE = "usage: probe A B [SECONDS [RATE]]"


def parse_probe_args(line: str) -> tuple[str, str, float, int]:
    """``A B [SECONDS [RATE]]`` -> (A, B, seconds, packets/s); a one-line `UserError` for
    anything else (seconds in (0, 3600], rate a whole number in 1..1,000,000)."""
    try:
        args = shlex.split(line)
    except ValueError as e:
        raise UserError(f"{PROBE_USAGE} ({e})") from None
    if len(args) not in (2, 3, 4):
        raise UserError(PROBE_USAGE)
    seconds = 3.0
    if len(args) >= 3:
        try:
            seconds = float(args[2])
        except ValueError:
            raise UserError(f"probe: SECONDS must be a number, not {args[2]!r}") from None
        if not 0 < seconds <= PROBE_MAX_SECONDS:  # also refuses nan
            raise UserError(f"probe: SECONDS must be in (0, {PROBE_MAX_SECONDS:g}], not {args[2]}")
    rate = 1000
    if len(args) == 4:
        try:
            rate = int(args[3].replace(",", "").replace("_", ""))
        except ValueError:
            raise UserError(f"probe: RATE must be a whole number of packets/s, not {args[3]!r}") from None
        if not 1 <= rate <= PROBE_MAX_RATE:
            raise UserError(f"probe: RATE must be in 1..{PROBE_MAX_RATE:,} packets/s, not {args[3]}")
    return args[0], args[1], seconds, rate


def teardown_lab(network: Any, system: systems.System | None) -> None:
    """Run the teardown of the system that built a lab (errors are logged, not raised: the
    network must still be stopped)."""
    if system is None:
        return
    teardown = system.hook("lab_teardown")
    if teardown is None:
        return
    try:
        teardown(network)
    except Exception as e:
        log.warning("%s teardown: %s", system.name, e)


@contextmanager
def building(console: Console, title: str) -> Iterator[Callable[..., None]]:
    """A transient progress display while a lab's network is built; yields the
    ``progress(message, fraction=None)`` callable the builders take. Without a terminal (a
    pipe, a log) a live display would show nothing: one plain line per step instead."""
    if not console.is_terminal:
        from routerlab.runner import ProgressLines

        lines = ProgressLines(console)
        yield lambda msg, frac=None: lines.step(f"building {title}", str(msg), frac)
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task(f"building {title}")
        yield lambda msg, frac=None: bar.update(task, description=str(msg))


def serve_lab(network: Any, stop: Callable[[], None], *, console: Console,
              script: str | None, system: str | None = None, **cli_options: Any) -> int:
    """Run the CLI over a built network with the commands of `system` (the name of the
    system that built it, None for a plain network); then, however it ends, that system's
    teardown and `stop` (which removes the network). `cli_options` go to Mininet's CLI."""
    sys_ = systems.get(system) if system else None
    try:
        lab_class(sys_)(network, console=console, script=script, **cli_options)
    finally:
        teardown_lab(network, sys_)
        stop()
    return 0


def lab_class(system: systems.System | None = None) -> type:
    """The CLI class of a lab: routerlab's commands plus those of the system that built it."""
    commands = system.hook("lab_commands") if system is not None else None
    return RouterlabCLI if commands is None else commands(RouterlabCLI)


def run_lab(topology: str, *, prefix: str = "rl-", console: Console | None = None,
            script: str | None = None) -> int:
    """Build the topology (by the system it names, if any), converge it with a progress
    display, open the CLI, tear down."""
    from routerlab.topology import load_topology

    console = console or Console()
    topo = load_topology(topology)  # bad input fails here, before anything is created
    system = systems.for_topology(topo)
    runner = system.hook("run_lab") if system is not None else None
    if runner is not None:
        return runner(topo, prefix=prefix, console=console, script=script)
    if topo.placement() is not None:  # cluster mode: nodes on servers (routerlab.cluster)
        from routerlab.cluster import ClusterNetwork as Network
    else:
        from routerlab.network import Network  # type: ignore[assignment]

    net = Network(topo, prefix=prefix)
    try:
        with building(console, topo.name) as progress:
            net.start(progress=progress)
            secs = net.wait_converged(progress=progress)
    except BaseException:
        net.stop()
        raise
    console.print(f"{topo.name}: {len(net.routers)} routers, {len(net.hosts)} hosts, "
                  f"{len(net.switches)} switches; converged in {secs:.1f} s. Type `help`.")
    return serve_lab(net, net.stop, console=console, script=script,
                     system=system.name if system else None)
