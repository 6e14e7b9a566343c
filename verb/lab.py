"""VERB commands for `routerlab cli` (registered in `routerlab.lab.LAB_EXTENSIONS`).

    verb start R [MODE]            R's daemon gives way to a bug-tolerant router (FRR, BIRD,
                                   GoBGP replicas) with R's own spec, in R's namespace
    verb status R                  replicas, masters, disagreements, sessions, recoveries
    verb mode R MODE               master-slave | continuous-majority | wait-for-consensus
    verb fault R FAULT REPLICA [k=v ...]   inject a bug (crash, hang, wrong-next-hop prefix=P
                                   gateway=G, missing-route prefix=P, bogus-route prefix=P,
                                   corrupt-update kind=as-path, malformed, withdraw-race,
                                   slow); `verb clear R` switches the faults off
    verb stop R                    back to R's original daemon

R must be a BGP-only router whose neighbours are on its connected subnets (the hypervisor
interposes on BGP; GoBGP speaks no OSPF).
"""
from __future__ import annotations

import json
import logging
import secrets
import shlex
from typing import Any

from .faults import FAULTS, Fault
from .router import BugTolerantRouter, VerbConfig

log = logging.getLogger(__name__)

USAGE = ("usage: verb start R [MODE] | verb status R | verb mode R MODE | "
         "verb fault R FAULT REPLICA [key=value ...] | verb clear R | verb stop R")


def parse_params(items: list[str]) -> dict[str, Any]:
    """key=value words; numbers become numbers, comma lists become lists (prefixes=A,B)."""
    out: dict[str, Any] = {}
    for it in items:
        key, sep, value = it.partition("=")
        if not sep or not key:
            raise ValueError(f"expected key=value, got {it!r}")
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


class VerbCommands:
    """The `verb` command (a mixin for the lab's CLI class)."""

    network: Any
    console: Any

    def _verb_state(self) -> dict:
        if not hasattr(self, "_verb"):
            self._verb: dict[str, dict] = {}
        return self._verb

    def do_verb(self, line: str) -> None:
        """verb start|status|mode|fault|clear|stop R ...: a bug-tolerant router (VERB)."""
        def run() -> None:
            args = shlex.split(line)
            if len(args) < 2:
                raise ValueError(USAGE)
            sub, name, rest = args[0], args[1], args[2:]
            handler = getattr(self, f"_verb_{sub}", None)
            if handler is None:
                raise ValueError(USAGE)
            handler(name, rest)
        guard = getattr(self, "_guard", None)  # the lab CLI prints errors and goes on
        guard(run) if guard is not None else run()

    def _verb_router(self, name: str) -> BugTolerantRouter:
        st = self._verb_state().get(name)
        if st is None:
            raise ValueError(f"{name} is not a bug-tolerant router (verb start {name})")
        return st["router"]

    def _verb_start(self, name: str, rest: list[str]) -> None:
        if name in self._verb_state():
            raise ValueError(f"{name} already runs VERB")
        node = self.network.router(name)
        spec = node.daemon.spec
        if spec.ospf_enabled or not spec.bgp_neighbors:
            raise ValueError(f"{name}: VERB needs a BGP-only router (it has "
                             f"{'OSPF' if spec.ospf_enabled else 'no BGP neighbours'})")
        mode = rest[0] if rest else "continuous-majority"
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
        self.console.print(f"{name}: bug-tolerant router up ({mode}; replicas "
                           f"{', '.join(router.config.implementations)})")

    def _verb_status(self, name: str, rest: list[str]) -> None:
        status = self._verb_router(name).status()
        self.console.print_json(json.dumps(status, default=str))

    def _verb_mode(self, name: str, rest: list[str]) -> None:
        if not rest:
            raise ValueError("usage: verb mode R MODE")
        self._verb_router(name).set_mode(rest[0])
        self.console.print(f"{name}: voting mode {rest[0]}")

    def _verb_fault(self, name: str, rest: list[str]) -> None:
        if len(rest) < 2 or rest[0] not in FAULTS:
            raise ValueError(f"usage: verb fault R FAULT REPLICA [key=value ...]; faults: {', '.join(FAULTS)}")
        router = self._verb_router(name)
        f: Fault = FAULTS[rest[0]](router, rest[1], **parse_params(rest[2:])).inject()
        self._verb_state()[name]["faults"].append(f)
        self.console.print(f"{name}: {f.name} injected on {rest[1]} ({f.description})")

    def _verb_clear(self, name: str, rest: list[str]) -> None:
        for f in self._verb_state()[name]["faults"]:
            f.clear()
        self._verb_state()[name]["faults"] = []

    def _verb_stop(self, name: str, rest: list[str]) -> None:
        st = self._verb_state().pop(name, None)
        if st is None:
            raise ValueError(f"{name} is not a bug-tolerant router")
        for f in st["faults"]:
            f.clear()
        st["router"].stop()
        node = self.network.router(name)
        node.start_daemon(node.daemon.run_dir)
        self.console.print(f"{name}: back to its own {node.daemon.implementation}")


def extend(cls: type) -> type:
    return type(f"Verb{cls.__name__}", (VerbCommands, cls), {})


def register() -> None:
    from routerlab.lab import LAB_EXTENSIONS
    LAB_EXTENSIONS["verb"] = extend


register()
