"""VERB commands for `routerlab cli verb` (VERB's lab commands in `verb.system`).

    verb start R [MODE]        R's daemon gives way to a bug-tolerant router (FRR, BIRD and
                               GoBGP replicas) with R's own configuration, in R's namespace;
                               returns once every neighbour is Established again
    verb status R [--json]     replicas (uptime), masters, disagreements, neighbours,
                               injected faults, recoveries (how long each took)
    verb mode R MODE           master-slave | continuous-majority | wait-for-consensus
    verb fault R FAULT REPLICA [key=value ...]
                               inject a bug into REPLICA (r1, 1 or bird): crash, hang,
                               wrong-next-hop prefix=P gateway=G, missing-route prefix=P,
                               bogus-route prefix=P [gateway=G],
                               corrupt-update [kind=as-path|next-hop] [next_hop=A],
                               malformed, withdraw-race [prefixes=P,...],
                               slow [stop_s=S] [run_s=S]
    verb clear R               switch R's injected faults off
    verb stop R                back to R's original daemon

R must be a BGP-only router whose neighbours are on its connected subnets (the hypervisor
interposes on BGP; GoBGP speaks no OSPF).
"""
from __future__ import annotations

import json
import logging
import secrets
import shlex
import time
from typing import Any

from rich.table import Table

from routerlab.errors import UserError
from routerlab.expect import wait_for
from routerlab.netns import CommandError
from routerlab.report import format_duration

from .core import Mode
from .faults import FAULTS, Fault, FaultError
from .router import BugTolerantRouter, VerbConfig

log = logging.getLogger(__name__)

# How long `verb start` / `verb stop` wait for every neighbour's session to be Established.
SESSION_DEADLINE_S = 90.0

USAGE = ("usage: verb start R [MODE] | verb status R | verb mode R MODE | "
         "verb fault R FAULT REPLICA [key=value ...] | verb clear R | verb stop R")


def parse_params(items: list[str]) -> dict[str, Any]:
    """key=value words; numbers become numbers, comma lists become lists (prefixes=A,B)."""
    out: dict[str, Any] = {}
    for it in items:
        key, sep, value = it.partition("=")
        if not sep or not key or not value:
            raise UserError(f"expected key=value, got {it!r}")
        if "," in value:
            out[key] = [v for v in value.split(",") if v]
            continue
        try:
            out[key] = float(value) if "." in value and value.replace(".", "", 1).isdigit() else int(value)
        except ValueError:
            out[key] = value
    if "prefixes" in out and isinstance(out["prefixes"], str):
        out["prefixes"] = [out["prefixes"]]
    return out


def parse_mode(word: str) -> Mode:
    """A voting mode by its name."""
    try:
        return Mode(word)
    except ValueError:
        raise UserError(f"unknown mode {word!r} (modes: {', '.join(m.value for m in Mode)})") from None


def _settled(cond: Any) -> bool:
    """True once `cond` holds, False if it still does not after SESSION_DEADLINE_S."""
    try:
        wait_for(cond, SESSION_DEADLINE_S, interval=0.5, what="BGP sessions")
        return True
    except TimeoutError:
        return False


def _replica_name(router: BugTolerantRouter, word: str) -> str:
    """A replica by name (r1), index (1) or daemon (bird)."""
    impls = dict(zip(router.names, router.config.implementations))
    if word in impls:
        return word
    if word.isdigit() and f"r{word}" in impls:
        return f"r{word}"
    by_impl = [r for r, impl in impls.items() if impl == word]
    if len(by_impl) == 1:
        return by_impl[0]
    known = ", ".join(f"{r} ({impl})" for r, impl in impls.items())
    raise UserError(f"unknown replica {word!r} (replicas: {known})")


class VerbCommands:
    """The `verb` command (a mixin for the lab's CLI class)."""

    network: Any
    console: Any

    def _verb_state(self) -> dict:
        # Kept on the network, not the CLI: the lab's teardown (`stop_all`) must find the
        # running routers even when the CLI ended with an exception.
        return _routers(self.network)

    def do_verb(self, line: str) -> None:
        """verb start|status|mode|fault|clear|stop R ...: a bug-tolerant router (VERB);
        `help verb` lists the subcommands."""
        def run() -> None:
            try:
                args = shlex.split(line)
            except ValueError as e:  # an unclosed quote
                raise UserError(f"{e}; {USAGE}") from None
            if len(args) < 2 or args[0] not in SUBCOMMANDS:
                raise UserError(USAGE)
            sub, name, rest = args[0], args[1], args[2:]
            getattr(self, f"_verb_{sub}")(name, rest)
        guard = getattr(self, "_guard", None)  # the lab CLI prints errors and goes on
        guard(run) if guard is not None else run()

    def _verb_router(self, name: str) -> BugTolerantRouter:
        st = self._verb_state().get(name)
        if st is None:
            raise UserError(f"{name} is not a bug-tolerant router (verb start {name})")
        return st["router"]

    def _verb_start(self, name: str, rest: list[str]) -> None:
        if name in self._verb_state():
            raise UserError(f"{name} already runs VERB")
        node = self.network.router(name)
        spec = node.daemon.spec
        if spec.ospf_enabled or not spec.bgp_neighbors:
            raise UserError(f"{name}: VERB needs a BGP-only router (it has "
                             f"{'OSPF' if spec.ospf_enabled else 'no BGP neighbours'})")
        if len(rest) > 1:
            raise UserError("usage: verb start R [MODE]")
        mode = parse_mode(rest[0]).value if rest else "continuous-majority"
        node.daemon.stop()
        router = BugTolerantRouter(spec, node.netns, tag=f"vb{secrets.token_hex(2)}",
                                   config=VerbConfig(mode=mode))
        try:
            router.start()
        except Exception:
            router.stop()
            node.start_daemon(node.daemon.run_dir)
            raise
        self._verb_state()[name] = {"router": router, "faults": []}
        # The neighbours' sessions were reset with the old daemon; ready means they are
        # Established again through the hypervisor and every replica has caught up.
        ready = _settled(lambda: self._verb_ready(router))
        self.console.print(f"{name}: bug-tolerant router up ({mode}; replicas "
                           f"{', '.join(router.config.implementations)})"
                           + ("; every neighbour Established" if ready else
                              f"; [yellow]not every neighbour Established after "
                              f"{format_duration(SESSION_DEADLINE_S)} (see `verb status {name}`)[/]"))

    @staticmethod
    def _verb_ready(router: BugTolerantRouter) -> bool:
        st = router.status()
        return (all(n["established"] for n in st["neighbors"].values())
                and all(e["caught_up"] for e in st["endpoints"].values()))

    def _verb_status(self, name: str, rest: list[str]) -> None:
        """Replicas, voting, and the neighbours' sessions as tables (`--json` for everything)."""
        if rest not in ([], ["--json"]):
            raise UserError("usage: verb status R [--json]")
        status = self._verb_router(name).status()
        if rest == ["--json"]:
            self.console.print_json(json.dumps(status, default=str))
            return
        t = Table("replica", "daemon", "state", "generation", "uptime", "FIB disagreements",
                  "update disagreements", title=f"{name}: {status['mode']}, FIB master "
                  f"{status['master']['fib']}, update master {status['master']['updates']}")
        for r, st in status["replicas"].items():
            dis = status["disagreements"].get(r, {})
            t.add_row(r, st.get("impl", ""), st.get("state", ""), str(st.get("generation", "")),
                      format_duration(st.get("uptime_s")), str(dis.get("fib", 0)), str(dis.get("updates", 0)))
        self.console.print(t)
        n = Table("neighbour", "established", "connections", "updates in", "updates out",
                  "advertised", "notifications sent", title=f"{name}: neighbours")
        for peer, st in status["neighbors"].items():
            n.add_row(peer, "yes" if st["established"] else "no", str(st["established_count"]),
                      str(st["updates_in"]), str(st["updates_out"]), str(st["advertised"]),
                      str(st["notifications_sent"]))
        self.console.print(n)
        if status["recoveries"]:
            self.console.print(recoveries_table(name, status["recoveries"]))
        now = time.monotonic()
        faults = [f"{f.name} on {f.replica_name} ({format_duration(now - f.injected_at)} ago)"
                  for f in self._verb_state()[name]["faults"] if f.active and f.injected_at is not None]
        self.console.print(f"voted FIB: {status['fib_routes']} routes ({status['fib_errors']} "
                           f"install errors); recoveries: {len(status['recoveries'])}; "
                           f"injected faults: {', '.join(faults) or 'none'}")

    def _verb_mode(self, name: str, rest: list[str]) -> None:
        if len(rest) != 1:
            raise UserError("usage: verb mode R MODE")
        mode = parse_mode(rest[0])
        self._verb_router(name).set_mode(mode)
        self.console.print(f"{name}: voting mode {mode.value}")

    def _verb_fault(self, name: str, rest: list[str]) -> None:
        if not rest or rest[0] not in FAULTS:
            raise UserError(f"usage: verb fault R FAULT REPLICA [key=value ...]; faults: {', '.join(FAULTS)}")
        kind = FAULTS[rest[0]]
        if len(rest) < 2:
            raise UserError(f"usage: verb fault R {kind.name} REPLICA ...; {kind.usage()}")
        params = kind.check_params(parse_params(rest[2:]))  # before anything is touched
        router = self._verb_router(name)
        replica = _replica_name(router, rest[1])
        f: Fault = kind(router, replica, **params)
        try:
            f.inject()
        except (FaultError, CommandError) as e:  # e.g. missing-route on GoBGP, an unreachable gateway
            raise UserError(f"{kind.name} on {replica}: {e}") from None
        self._verb_state()[name]["faults"].append(f)
        self.console.print(f"{name}: {f.name} injected on {replica} ({f.description})")

    def _verb_clear(self, name: str, rest: list[str]) -> None:
        if rest:
            raise UserError("usage: verb clear R")
        self._verb_router(name)
        faults = self._verb_state()[name]["faults"]
        for f in faults:
            f.clear()
        self._verb_state()[name]["faults"] = []
        self.console.print(f"{name}: {len(faults)} fault(s) cleared")

    def _verb_stop(self, name: str, rest: list[str]) -> None:
        if rest:
            raise UserError("usage: verb stop R")
        st = self._verb_state().pop(name, None)
        if st is None:
            raise UserError(f"{name} is not a bug-tolerant router")
        for f in st["faults"]:
            f.clear()
        st["router"].stop()
        node = self.network.router(name)
        node.start_daemon(node.daemon.run_dir)
        d = node.daemon
        ready = _settled(lambda: all(s.state == "Established" for s in d.bgp_sessions()))
        self.console.print(f"{name}: back to its own {d.implementation}"
                           + ("; every neighbour Established" if ready else ""))


SUBCOMMANDS = ("start", "status", "mode", "fault", "clear", "stop")


def recoveries_table(name: str, recoveries: list[dict]) -> Table:
    """What the manager did about each fault, with how long it took."""
    t = Table("replica", "reason", "daemon", "restarted after", "readmitted after",
              title=f"{name}: recoveries")
    for rec in recoveries:
        daemon = rec["impl_before"] + (f" -> {rec['impl_after']}" if rec.get("impl_after") not in
                                       ("", rec["impl_before"]) else "")
        t.add_row(rec["replica"], rec["reason"], daemon, format_duration(rec.get("restart_s")) or "-",
                  format_duration(rec.get("duration_s")) or "not yet")
    return t


def _routers(network: Any) -> dict[str, dict]:
    """The bug-tolerant routers running in a lab's network: name -> {router, faults}."""
    routers = getattr(network, "verb_routers", None)
    if routers is None:
        routers = {}
        network.verb_routers = routers
    return routers


def stop_all(network: Any) -> None:
    """Stop every bug-tolerant router a lab started (registered as its teardown)."""
    routers = _routers(network)
    while routers:
        name, st = routers.popitem()
        for f in st["faults"]:
            f.clear()
        log.info("%s: stopping the bug-tolerant router as the lab ends", name)
        st["router"].stop()


VerbCommands.do_verb.__doc__ = __doc__  # `help verb` in the lab shows the whole usage


def extend(cls: type) -> type:
    return type(f"Verb{cls.__name__}", (VerbCommands, cls), {})

