"""ExaBGP 4.2 driver: an external BGP speaker / route injector.

ExaBGP keeps no RIB and installs nothing. The rendered config has the neighbours, the spec's
`networks` as static routes, and an API `process`: a small helper script (rendered into
run_dir) that
  * copies command lines from a FIFO (`exabgp.cmd`) to ExaBGP, so callers can announce and
    withdraw at run time (`announce()`, `withdraw()`, `cli()`), and
  * appends everything ExaBGP tells the process (JSON neighbour state changes and parsed
    received updates, plus "done"/"error" command acknowledgements) to `exabgp.events`.

`bgp_sessions()` and `routes()` are reconstructed from that event stream: sessions from the
state messages (up/down/connected), received routes from the parsed updates. Bulk injection
packs many prefixes into one `announce attributes ... nlri P1 P2 ...` command, which ExaBGP
sends as few large UPDATE messages.
"""
from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from routerlab.expect import ExpectTimeout, wait_for

from .base import (BgpSession, Daemon, DaemonError, NextHop, Route, one_line)
from .spec import ACCEPT_ALL, RouterSpec

log = logging.getLogger(__name__)

# NLRIs per API command: a /24 takes 4 bytes, so ~1000 fill one 4096-byte UPDATE.
ANNOUNCE_CHUNK = 1000

HELPER = r'''#!/usr/bin/env python3
"""ExaBGP API process rendered by routerlab: FIFO -> ExaBGP, ExaBGP -> events file."""
import os, sys, threading

cmd_path, events_path = sys.argv[1], sys.argv[2]


def pump_events():
    with open(events_path, "a", buffering=1) as ev:
        for line in sys.stdin:
            ev.write(line if line.endswith("\n") else line + "\n")
    os._exit(0)  # ExaBGP closed our stdin: it is going away


threading.Thread(target=pump_events, daemon=True).start()
# O_RDWR: the FIFO never reports EOF when a writer closes it
fd = os.open(cmd_path, os.O_RDWR)
with open(events_path, "a", buffering=1) as ev:
    ev.write('{"routerlab": "api-ready", "pid": %d}\n' % os.getpid())
with os.fdopen(fd, "r", buffering=1) as commands:
    for line in commands:
        sys.stdout.write(line)
        sys.stdout.flush()
'''


class ExabgpDaemon(Daemon):
    """ExaBGP for one router spec: neighbours, static routes, run-time injection API."""

    implementation = "exabgp"
    description = "BGP route injector, no RIB/FIB"
    features = frozenset({"bgp"})

    def __init__(self, spec: RouterSpec):
        super().__init__(spec)
        self._announced: set[str] = {n.prefix for n in spec.networks}

    # ----- rendering -----
    @property
    def cmd_fifo(self) -> Path:
        return self.config_dir / "exabgp.cmd"

    @property
    def events_path(self) -> Path:
        return self.config_dir / "exabgp.events"

    def check_supported(self) -> None:
        super().check_supported()
        if not self.spec.bgp_enabled:
            raise DaemonError(f"exabgp {self.spec.name}: the spec has no asn (ExaBGP is BGP only)")
        bad = [nb.peer for nb in self.spec.bgp_neighbors
               if nb.import_policy != ACCEPT_ALL or nb.export_policy != ACCEPT_ALL]
        if bad:
            raise DaemonError(f"exabgp {self.spec.name}: ExaBGP applies no policies "
                              f"(neighbours {', '.join(bad)}); set route attributes per Network")

    def render(self) -> dict[str, str]:
        s = self.spec
        L = [f"# ExaBGP configuration for router {s.name}, rendered by routerlab",
             "process routerlab-api {",
             f"    run {sys.executable} {self.config_dir / 'exabgp-api.py'} "
             f"{self.cmd_fifo} {self.events_path};",
             "    encoder json;", "}", ""]
        for nb in s.bgp_neighbors:
            local = s.local_address_for(nb)
            if not local:
                raise DaemonError(f"exabgp {s.name}: neighbour {nb.peer} needs a local address "
                                  "(none given and no interface on its subnet)")
            L += [f"neighbor {nb.peer} {{", f"    router-id {s.router_id};",
                  f"    local-address {local};", f"    local-as {s.asn};",
                  f"    peer-as {nb.asn};", f"    hold-time {nb.hold};",
                  "    group-updates true;",
                  # what a neighbour sends us reaches the API process (the events file);
                  # ExaBGP's own copy of it was never read, and cost ~1 GB a neighbour
                  # holding a full table
                  "    adj-rib-in false;"]
            if nb.description:
                L.append(f'    description "{nb.description}";')
            if nb.passive:
                L.append("    passive true;")
            if nb.ebgp_multihop:
                L.append(f"    outgoing-ttl {nb.ebgp_multihop};")
            L.append("    family { ipv4 unicast; }")
            if s.graceful_restart:
                L.append("    capability { graceful-restart 120; }")
            L += ["    api {", "        processes [ routerlab-api ];", "        neighbor-changes;",
                  "        receive { parsed; update; }", "    }"]
            if s.networks:
                L.append("    static {")
                for n in s.networks:
                    L.append(f"        route {n.prefix} {_attrs(n.next_hop, n.med, n.as_path)};")
                L.append("    }")
            L += ["}", ""]
        extra = s.overrides.get("exabgp")
        if extra:
            L.append(extra.rstrip())
        return {"exabgp.conf": "\n".join(L) + "\n", "exabgp-api.py": HELPER}

    def _env(self, directory: Path) -> dict[str, str]:
        env = {"exabgp.daemon.user": "root", "exabgp.daemon.drop": "false",
               "exabgp.daemon.daemonize": "false",
               "exabgp.daemon.pid": str(directory / "exabgp.pid"),
               "exabgp.log.destination": str(directory / "exabgp.log"),
               "exabgp.log.level": "INFO",
               "exabgp.api.cli": "false", "exabgp.api.ack": "true",
               "exabgp.api.encoder": "json", "exabgp.api.respawn": "true"}
        passive = [self.spec.local_address_for(nb) for nb in self.spec.bgp_neighbors if nb.passive]
        if passive:
            env["exabgp.tcp.bind"] = " ".join(sorted({a for a in passive if a}))
        return env

    # ----- validation / lifecycle -----
    def _prepare_dir(self, directory: Path) -> None:
        self.machine.mkfifo(directory / "exabgp.cmd", 0o600)

    def _check_config(self, directory: Path) -> None:
        r = self.machine.run(["exabgp", "--test", str(directory / "exabgp.conf")], check=False, timeout=60,
                             env={**self._env(directory), "exabgp.log.destination": "stdout"})
        if r.returncode != 0:
            raise DaemonError(f"exabgp {self.spec.name}: exabgp.conf rejected by exabgp --test: "
                              f"{exabgp_error(r.stdout + r.stderr)}")

    def _launch(self) -> None:
        assert self.run_dir is not None
        self.machine.write_text(self.events_path, "")
        self._popen("exabgp", ["exabgp", str(self.run_dir / "exabgp.conf")],
                    env=self._env(self.run_dir))

    def _ready(self) -> bool:
        try:
            return '"api-ready"' in self.machine.read_text(self.events_path)
        except FileNotFoundError:
            return False

    def log_files(self) -> list[Path]:
        if self.run_dir is None:
            return []
        return [p for p in (self.run_dir / "exabgp.log", self.run_dir / "exabgp.out") if self.machine.exists(p)]

    # ----- run-time injection -----
    def send(self, lines: Iterable[str]) -> int:
        """Write API command lines to ExaBGP (through the FIFO); returns how many."""
        if not self.is_running():
            raise DaemonError(f"exabgp {self.spec.name}: not running")
        data = "".join(ln.rstrip("\n") + "\n" for ln in lines).encode()
        try:
            # non-blocking open: with no reader (helper gone) this fails instead of hanging
            self.machine.write_fifo(self.cmd_fifo, data)
        except OSError as e:
            raise DaemonError(f"exabgp {self.spec.name}: API helper not reading {self.cmd_fifo}: "
                              f"{e}") from None
        return data.count(b"\n")

    def announce(self, prefixes: Iterable[str], next_hop: str = "self", *,
                 med: int | None = None, as_path: Iterable[int] = (),
                 neighbor: str | None = None) -> int:
        """Announce prefixes (many per command); returns the number of commands sent."""
        plist = list(prefixes)
        attrs = _attrs(next_hop, med, tuple(as_path))
        target = f"neighbor {neighbor} " if neighbor else ""
        cmds = [f"{target}announce attributes {attrs} nlri {' '.join(chunk)}"
                for chunk in _chunks(plist, ANNOUNCE_CHUNK)]
        self.send(cmds)
        self._announced.update(plist)
        return len(cmds)

    def withdraw(self, prefixes: Iterable[str], *, neighbor: str | None = None) -> int:
        """Withdraw prefixes (many per command); returns the number of commands sent."""
        plist = list(prefixes)
        target = f"neighbor {neighbor} " if neighbor else ""
        cmds = [f"{target}withdraw attributes next-hop self nlri {' '.join(chunk)}"
                for chunk in _chunks(plist, ANNOUNCE_CHUNK)]
        self.send(cmds)
        self._announced.difference_update(plist)
        return len(cmds)

    def announced(self) -> set[str]:
        """Prefixes this driver has announced (config networks + run-time announcements)."""
        return set(self._announced)

    def acks(self) -> tuple[int, int]:
        """(done, error) acknowledgements ExaBGP has given to API commands so far."""
        done = err = 0
        for ln in self._event_lines():
            s = ln.strip()
            if s == "done":
                done += 1
            elif s == "error":
                err += 1
        return done, err

    def cli(self, command: str, timeout: float = 10.0) -> str:
        """Send one API command and return ExaBGP's answer (text up to its done/error ack)."""
        before = len(self._event_lines())
        self.send([command])

        def answer() -> str:
            """The answer so far if it ends in an acknowledgement, else ""."""
            lines = [ln for ln in self._event_lines()[before:] if not ln.startswith("{")]
            return "\n".join(lines) if any(ln.strip() in ("done", "error") for ln in lines) else ""

        try:
            return wait_for(answer, timeout, interval=0.05, what=f"exabgp {self.spec.name}: ack of {command!r}",
                            retry_on=())
        except ExpectTimeout:
            raise DaemonError(f"exabgp {self.spec.name}: no acknowledgement for {command!r} "
                              f"after {timeout:.0f}s") from None

    # ----- status -----
    def _event_lines(self) -> list[str]:
        try:
            return self.machine.read_text(self.events_path, errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def bgp_sessions(self) -> list[BgpSession]:
        st = replay_events(self._event_lines())
        out = []
        now = time.time()
        for nb in self.spec.bgp_neighbors:
            p = st.peers.get(nb.peer, PeerEvents())
            state = p.state
            out.append(BgpSession(
                peer=nb.peer, peer_asn=nb.asn, state=state,
                uptime=max(0.0, now - p.up_since) if state == "Established" and p.up_since else None,
                established_count=p.ups,
                prefixes_received=len(st.rib.get(nb.peer, {})),
                description=nb.description,
                local_address=self.spec.local_address_for(nb),
                last_error=p.last_down_reason))
        return out

    def routes(self) -> list[Route]:
        """Routes received from the peers (ExaBGP's adj-RIB-in as its events tell it)."""
        return rib_routes(replay_events(self._event_lines()))

    @classmethod
    def version(cls) -> str | None:
        try:
            r = subprocess.run(["exabgp", "--version"], capture_output=True, text=True, timeout=30)
        except FileNotFoundError:
            return None
        m = re.search(r"ExaBGP\s*:\s*(\S+)", r.stdout + r.stderr)
        return m.group(1) if m else None


def _attrs(next_hop: str | None, med: int | None, as_path: tuple[int, ...]) -> str:
    s = f"next-hop {next_hop or 'self'}"
    if med is not None:
        s += f" med {med}"
    if as_path:
        s += " as-path [ " + " ".join(str(a) for a in as_path) + " ]"
    return s


def _chunks(items: list[str], n: int) -> Iterator[list[str]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def exabgp_error(out: str) -> str:
    """The meaningful lines of ExaBGP's (`HH:MM:SS | pid | topic | text`) error output."""
    texts = []
    for ln in out.splitlines():
        parts = [p.strip() for p in ln.split("|", 3)]
        text = parts[3] if len(parts) == 4 else ln.strip()
        if text and re.search(r"error|line \d+|invalid|unknown|missing|could not|can not|"
                              r"cannot|problem", text, re.I):
            texts.append(text)
    return one_line("\n".join(texts) or out[-400:])


# ----------------------------------------------------------------------------------------
# Event replay (pure; unit-tested against a recorded events file)
# ----------------------------------------------------------------------------------------

_STATE_MAP = {"up": "Established", "connected": "OpenSent", "down": "Active",
              "shutdown": "Idle", "fsm": "Active"}


@dataclass
class PeerEvents:
    state: str = "Active"  # before any event: ExaBGP is trying to connect
    ups: int = 0
    up_since: float | None = None
    last_down_reason: str | None = None


@dataclass
class EventState:
    peers: dict[str, PeerEvents] = field(default_factory=dict)
    # peer -> prefix -> (next hop, med)
    rib: dict[str, dict[str, tuple[str | None, int | None]]] = field(default_factory=dict)


def _nlri_prefix(n: Any) -> str | None:
    """An update's NLRI as its prefix: ExaBGP writes a bare string or {"nlri": PREFIX, ...}."""
    return n.get("nlri") if isinstance(n, dict) else n


def replay_events(lines: Iterable[str]) -> EventState:
    """Fold ExaBGP's JSON API messages into session states and per-peer received routes."""
    st = EventState()
    for ln in lines:
        if not ln.startswith("{"):
            continue
        try:
            msg = json.loads(ln)
        except json.JSONDecodeError:
            continue
        nb = msg.get("neighbor") or {}
        peer = (nb.get("address") or {}).get("peer")
        if not peer:
            continue
        kind = msg.get("type")
        if kind == "state":
            p = st.peers.setdefault(peer, PeerEvents())
            raw = nb.get("state", "")
            p.state = _STATE_MAP.get(raw, "Active")
            if raw == "up":
                p.ups += 1
                p.up_since = float(msg.get("time", time.time()))
            elif raw == "down":
                p.up_since = None
                p.last_down_reason = nb.get("reason") or None
                st.rib.pop(peer, None)
        elif kind == "update":
            upd = ((nb.get("message") or {}).get("update")) or {}
            rib = st.rib.setdefault(peer, {})
            med = (upd.get("attribute") or {}).get("med")
            for fam, by_nh in (upd.get("announce") or {}).items():
                if fam != "ipv4 unicast":
                    continue
                for nh, nlris in by_nh.items():
                    for n in nlris:
                        prefix = _nlri_prefix(n)
                        if prefix is not None:
                            rib[prefix] = (nh, med)
            for fam, nlris in (upd.get("withdraw") or {}).items():
                if fam != "ipv4 unicast":
                    continue
                for n in nlris:
                    prefix = _nlri_prefix(n)
                    if prefix is not None:
                        rib.pop(prefix, None)
    return st


def rib_routes(st: EventState) -> list[Route]:
    out = []
    for rib in st.rib.values():
        for prefix, (nh, med) in rib.items():
            out.append(Route(prefix=prefix, protocol="bgp", nexthops=(NextHop(nh, None),),
                             selected=True, metric=med))
    return out
