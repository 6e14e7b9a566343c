"""GoBGP 3 driver: `gobgpd` with a TOML config, its gRPC API on 127.0.0.1:PORT inside the
router's namespace (every namespace has its own loopback, so the default port never clashes).

GoBGP 3.24 or newer is recommended (`scripts/get-gobgp.sh`, run by setup; `recommended`):
3.10 zeroes a full message's NLRI slice for every UPDATE it sends.

GoBGP is a BGP speaker only: it does not write the kernel FIB (its zebra integration would
need an FRR zebra next to it; not used). `routes()` is its global RIB from the API. Originated
networks are added through the API after start (its config file cannot carry routes).

Per-neighbour import/export policies become global GoBGP policies whose statements all match
a one-neighbour neighbor-set (GoBGP applies the neighbour condition to the source peer on
import and to the destination peer on export).
"""
from __future__ import annotations

import json
import logging
import re
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil

from .base import (BgpSession, Daemon, DaemonError, NextHop, Route, normalize_bgp_state,
                   one_line, parse_int)
from .spec import ACCEPT_ALL, BgpNeighbor, Policy, RouterSpec

log = logging.getLogger(__name__)

DEFAULT_API_PORT = 50051


def lean_go_runtime() -> dict[str, str]:
    """Go runtime settings that trade memory for CPU, for a GoBGP sharing a small machine
    with other daemons: one OS thread running Go code (no idle threads spinning for work
    on a 2-core VM; gobgpd takes it as --cpus, see `GobgpDaemon.command`), and a collection
    when the heap has grown by 400% instead of 100%, with a soft memory limit of a third of
    this machine's memory (MemTotal, not a cgroup's) from where Go collects sooner again:
    a live heap near that limit (a full table on a small machine) makes it collect often,
    as it would by default. Measured on VERB's 10,000-prefix trace (load and churn):
    gobgpd's CPU 2.1 -> 1.4-1.5 s, the router's memory (PSS) 222 -> 258 MiB (GOGC alone:
    gobgpd overrode GOMAXPROCS until it got --cpus); at 100,000 prefixes one thread rather
    than two: gobgpd 13.3 -> 12.0-12.2 s. At 1M prefixes the live heap is 2-3.6 GB and the
    limit binds: a third (7.8 GiB on a 24 GiB VM) rather than a quarter took gobgpd's CPU
    over the load from 266 to 232 s (one run each, same day); a third ran this VM out of
    memory until the ExaBGP neighbours stopped keeping an Adj-RIB-In and the hypervisor's
    memory shrank (at least 3.2 GB stayed available through a 1M load with a GoBGP revival)."""
    return {"GOMAXPROCS": "1", "GOGC": "400",
            "GOMEMLIMIT": f"{psutil.virtual_memory().total // 3 >> 20}MiB"}


def _toml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string literal is a valid TOML basic string


def _ident(peer: str) -> str:
    return peer.replace(".", "_")


class GobgpDaemon(Daemon):
    """GoBGP (`gobgpd`) for one router; BGP only, no FIB."""

    implementation = "gobgp"
    description = "BGP speaker, no FIB"
    features = frozenset({"bgp", "policy"})
    # the minimum scripts/get-gobgp.sh installs (its MIN)
    recommended = ("3.24", "before 3.24 gobgpd zeroes a 4 KiB NLRI slice for every UPDATE it sends "
                   "(about half its CPU with a full table): run scripts/get-gobgp.sh")

    def __init__(self, spec: RouterSpec, api_port: int = DEFAULT_API_PORT,
                 go_runtime: Mapping[str, str] | None = None,
                 bmp_station: tuple[str, int] | None = None):
        """`go_runtime`: Go runtime settings for gobgpd's environment (GOMAXPROCS, GOGC,
        GOMEMLIMIT), e.g. `lean_go_runtime()`; by default Go's own. `bmp_station`: a BMP
        station (address, port) gobgpd streams its Loc-RIB to (RFC 9069: one Route
        Monitoring message per best-path change), e.g. VERB's GoBGP FIB watcher."""
        super().__init__(spec)
        self.api_port = api_port
        self.go_runtime = dict(go_runtime or {})
        self.bmp_station = bmp_station

    def check_supported(self) -> None:
        super().check_supported()
        if not self.spec.bgp_enabled:
            raise DaemonError(f"gobgp {self.spec.name}: the spec has no asn (GoBGP is BGP only)")

    # ----- rendering -----
    def render(self) -> dict[str, str]:
        s = self.spec
        L = [f"# GoBGP configuration for router {s.name}, rendered by routerlab",
             "[global.config]", f"  as = {s.asn}", f"  router-id = {_toml_str(s.router_id)}",
             "  port = 179", '  local-address-list = ["0.0.0.0"]', ""]
        if self.bmp_station is not None:
            host, port = self.bmp_station
            L += ["[[bmp-servers]]", "  [bmp-servers.config]", f"    address = {_toml_str(host)}",
                  f"    port = {port}", '    route-monitoring-policy = "local-rib"', ""]
        sets: list[str] = []
        policies: list[str] = []
        imports: list[str] = []
        exports: list[str] = []
        for nb in s.bgp_neighbors:
            nset = f"nb_{_ident(nb.peer)}"
            sets += ["[[defined-sets.neighbor-sets]]", f"  neighbor-set-name = {_toml_str(nset)}",
                     f"  neighbor-info-list = [{_toml_str(nb.peer)}]", ""]
            for direction, pol_name in (("in", nb.import_policy), ("out", nb.export_policy)):
                set_nh_self = direction == "out" and nb.next_hop_self
                if pol_name == ACCEPT_ALL and not set_nh_self:
                    continue
                name = f"{direction}_{_ident(nb.peer)}"
                s_lines, p_lines = self._render_policy(s.policy(pol_name), name, nset, set_nh_self)
                sets += s_lines
                policies += p_lines
                (imports if direction == "in" else exports).append(name)
        if imports or exports:
            L += ["[global.apply-policy.config]",
                  f"  import-policy-list = [{', '.join(_toml_str(p) for p in imports)}]",
                  '  default-import-policy = "accept-route"',
                  f"  export-policy-list = [{', '.join(_toml_str(p) for p in exports)}]",
                  '  default-export-policy = "accept-route"', ""]
        for nb in s.bgp_neighbors:
            L += self._render_neighbor(nb)
        L += sets + policies
        extra = s.overrides.get("gobgp")
        if extra:
            L.append(extra.rstrip())
        return {"gobgpd.toml": "\n".join(L) + "\n"}

    def _render_neighbor(self, nb: BgpNeighbor) -> list[str]:
        s = self.spec
        L = ["[[neighbors]]", "  [neighbors.config]",
             f"    neighbor-address = {_toml_str(nb.peer)}", f"    peer-as = {nb.asn}"]
        if nb.description:
            L.append(f"    description = {_toml_str(nb.description)}")
        L += ["  [neighbors.timers.config]", f"    connect-retry = {nb.connect_retry}",
              f"    hold-time = {nb.hold}", f"    keepalive-interval = {nb.keepalive}",
              "    minimum-advertisement-interval = 0"]
        local = s.local_address_for(nb)
        L += ["  [neighbors.transport.config]", f"    passive-mode = {'true' if nb.passive else 'false'}"]
        if local:
            L.append(f"    local-address = {_toml_str(local)}")
        if nb.ebgp_multihop:
            L += ["  [neighbors.ebgp-multihop.config]", "    enabled = true",
                  f"    multihop-ttl = {nb.ebgp_multihop}"]
        if s.graceful_restart:
            L += ["  [neighbors.graceful-restart.config]", "    enabled = true",
                  "    restart-time = 120"]
        L += ["  [[neighbors.afi-safis]]", "    [neighbors.afi-safis.config]",
              '      afi-safi-name = "ipv4-unicast"']
        if s.graceful_restart:
            L += ["    [neighbors.afi-safis.mp-graceful-restart.config]", "      enabled = true"]
        L.append("")
        return L

    def _render_policy(self, pol: Policy, name: str, nset: str,
                       set_nh_self: bool) -> tuple[list[str], list[str]]:
        """(defined-sets lines, policy-definition lines) for one neighbour and direction."""
        sets: list[str] = []
        P = ["[[policy-definitions]]", f"  name = {_toml_str(name)}"]

        def statement(sname: str, prefix_set: str | None, disposition: str,
                      actions: list[str]) -> list[str]:
            st = ["  [[policy-definitions.statements]]", f"    name = {_toml_str(sname)}",
                  "    [policy-definitions.statements.conditions.match-neighbor-set]",
                  f"      neighbor-set = {_toml_str(nset)}", '      match-set-options = "any"']
            if prefix_set:
                st += ["    [policy-definitions.statements.conditions.match-prefix-set]",
                       f"      prefix-set = {_toml_str(prefix_set)}", '      match-set-options = "any"']
            st += ["    [policy-definitions.statements.actions]",
                   f"      route-disposition = {_toml_str(disposition)}"]
            return st + actions

        for idx, rule in enumerate(pol.rules):
            pset = None
            if rule.prefixes:
                pset = f"{name}_{idx}"
                sets += ["[[defined-sets.prefix-sets]]", f"  prefix-set-name = {_toml_str(pset)}"]
                for m in rule.prefixes:
                    lo, hi = m.bounds()
                    sets += ["  [[defined-sets.prefix-sets.prefix-list]]",
                             f"    ip-prefix = {_toml_str(m.prefix)}",
                             f"    masklength-range = {_toml_str(f'{lo}..{hi}')}"]
                sets.append("")
            acts: list[str] = []
            if rule.action == "accept":
                bgp = []
                if rule.set_local_pref is not None:
                    bgp.append(f"      set-local-pref = {rule.set_local_pref}")
                if rule.set_med is not None:
                    bgp.append(f"      set-med = {_toml_str(str(rule.set_med))}")
                if set_nh_self:
                    bgp.append('      set-next-hop = "self"')
                if bgp:
                    acts += ["    [policy-definitions.statements.actions.bgp-actions]", *bgp]
                if rule.prepend:
                    acts += ["    [policy-definitions.statements.actions.bgp-actions.set-as-path-prepend]",
                             f"      as = {_toml_str(str(self.spec.asn))}",
                             f"      repeat-n = {rule.prepend}"]
            P += statement(f"{name}_r{idx}", pset,
                           "accept-route" if rule.action == "accept" else "reject-route", acts)
        # the policy's default, for this neighbour only
        acts = []
        if pol.default == "accept" and set_nh_self:
            acts = ["    [policy-definitions.statements.actions.bgp-actions]",
                    '      set-next-hop = "self"']
        P += statement(f"{name}_default", None,
                       "accept-route" if pol.default == "accept" else "reject-route", acts)
        P.append("")
        return sets, P

    # ----- validation / lifecycle -----
    def _check_config(self, directory: Path) -> None:
        r = self.machine.run(["gobgpd", "-f", str(directory / "gobgpd.toml"), "-t", "toml", "-d"],
                             check=False, timeout=30)
        if r.returncode != 0:
            raise DaemonError(f"gobgp {self.spec.name}: gobgpd.toml rejected by gobgpd -d: "
                              f"{_gobgp_error(r.stdout + r.stderr)}")

    # GoBGP 3 logs through logrus ("fatal", "panic"), GoBGP 4 through slog (upper case)
    fatal_log_patterns = (r'"level":"(?i:fatal|panic)"',)

    def _launch(self) -> None:
        assert self.run_dir is not None
        # Another gobgpd in this namespace would answer our readiness probe: refuse early.
        r = self._run(["ss", "-Hltn", f"sport = :{self.api_port}"], check=False)
        if r.stdout.strip():
            raise DaemonError(f"gobgp {self.spec.name}: API port 127.0.0.1:{self.api_port} is "
                              f"already in use in {self.ns.name if self.ns else '?'}: "
                              f"{one_line(r.stdout)}")
        self._popen("gobgpd", self.command(self.run_dir), log_path=self.run_dir / "gobgpd.log",
                    env=self.go_runtime or None)

    def command(self, run_dir: Path) -> list[str]:
        """gobgpd's command line for a configuration rendered into `run_dir`."""
        args = ["gobgpd", "-f", str(run_dir / "gobgpd.toml"), "-t", "toml",
                "--api-hosts", f"127.0.0.1:{self.api_port}", "--pprof-disable", "-l", "info"]
        if "GOMAXPROCS" in self.go_runtime:
            # gobgpd sets GOMAXPROCS itself, to --cpus or else to every CPU: the
            # environment's value alone is overridden at startup
            args += ["--cpus", self.go_runtime["GOMAXPROCS"]]
        return args

    def _ready(self) -> bool:
        r = self._run(self._gobgp_args("global", "-j"), check=False, timeout=5)
        if r.returncode != 0:
            return False
        try:
            return bool(json.loads(r.stdout).get("asn"))
        except (json.JSONDecodeError, AttributeError):
            return False

    def _post_start(self) -> None:
        for n in self.spec.networks:
            # origin igp, as FRR's and BIRD's originated networks carry
            args = ["global", "rib", "add", "-a", "ipv4", n.prefix, "origin", "igp"]
            if n.med is not None:
                args += ["med", str(n.med)]
            self.gobgp(*args)

    # ----- queries -----
    def _gobgp_args(self, *args: str) -> list[str]:
        return ["gobgp", "-u", "127.0.0.1", "-p", str(self.api_port), *args]

    def gobgp(self, *args: str, timeout: float = 30.0) -> str:
        """Run the `gobgp` client against this instance (inside its namespace)."""
        r = self._run(self._gobgp_args(*args), check=False, timeout=timeout)
        if r.returncode != 0:
            raise DaemonError(f"gobgp {self.spec.name}: gobgp {' '.join(args)}: "
                              f"{(r.stderr or r.stdout).strip()}")
        return r.stdout

    def gobgp_json(self, *args: str) -> Any:
        out = self.gobgp(*args, "-j")
        try:
            return json.loads(out) if out.strip() else None
        except json.JSONDecodeError as e:
            raise DaemonError(f"gobgp {self.spec.name}: gobgp {' '.join(args)} -j: bad JSON "
                              f"({e}): {out[:200]}") from None

    def cli(self, command: str) -> str:
        return self.gobgp(*command.split())

    def bgp_sessions(self) -> list[BgpSession]:
        counts = count_peer_up(self._log_text())
        return parse_neighbors(self.gobgp_json("neighbor") or [], counts, now=time.time())

    def _log_text(self) -> str:
        if self.run_dir is None:
            return ""
        try:
            return self.machine.read_text(self.run_dir / "gobgpd.log", errors="replace")
        except FileNotFoundError:
            return ""

    def routes(self) -> list[Route]:
        return parse_rib(self.gobgp_json("global", "rib", "-a", "ipv4") or {})

    def announce(self, prefix: str, next_hop: str | None = None) -> None:
        """Originate a prefix at run time (added to GoBGP's global RIB)."""
        args = ["global", "rib", "add", "-a", "ipv4", prefix, "origin", "igp"]
        if next_hop:
            args += ["nexthop", next_hop]
        self.gobgp(*args)

    def withdraw(self, prefix: str) -> None:
        self.gobgp("global", "rib", "del", "-a", "ipv4", prefix)

    @classmethod
    def version(cls) -> str | None:
        try:
            r = subprocess.run(["gobgpd", "--version"], capture_output=True, text=True, timeout=10)
        except FileNotFoundError:
            return None
        m = re.search(r"version\s+(\S+)", r.stdout + r.stderr)
        return m.group(1) if m else None


def _gobgp_error(out: str) -> str:
    """The error text of gobgpd's (JSON or plain) log lines."""
    msgs = []
    for ln in out.splitlines():
        try:
            rec = json.loads(ln)
        except json.JSONDecodeError:
            if ln.strip():
                msgs.append(ln.strip())
            continue
        if str(rec.get("level", "")).lower() in ("error", "fatal", "panic"):
            msgs.append(f"{rec.get('msg', '')}: {rec.get('Error', '')}".strip(": "))
    return one_line("\n".join(msgs) or out)


# ----------------------------------------------------------------------------------------
# Parsers (pure; unit-tested against recorded `gobgp -j` output)
# ----------------------------------------------------------------------------------------

# apipb.PeerState.SessionState (the JSON carries the enum number)
_SESSION_STATES = {0: "Idle", 1: "Idle", 2: "Connect", 3: "Active", 4: "OpenSent",
                   5: "OpenConfirm", 6: "Established"}


def count_peer_up(log_text: str) -> dict[str, int]:
    """How many times each peer came up: gobgpd's "Peer Up" log records (JSON lines).

    GoBGP 3's API has no established-transitions counter (its `flops` only counts sessions
    that died young), so its own log is the honest source."""
    counts: dict[str, int] = {}
    for ln in log_text.splitlines():
        if '"Peer Up"' not in ln:
            continue
        try:
            rec = json.loads(ln)
        except json.JSONDecodeError:
            continue
        if rec.get("msg") == "Peer Up" and rec.get("Key"):
            counts[rec["Key"]] = counts.get(rec["Key"], 0) + 1
    return counts


def parse_neighbors(data: list[dict[str, Any]], established_counts: dict[str, int] | None = None,
                    now: float | None = None) -> list[BgpSession]:
    """`gobgp neighbor -j` -> BgpSession list (`established_counts` from `count_peer_up`)."""
    now = time.time() if now is None else now
    counts = established_counts or {}
    out = []
    for e in data:
        conf = e.get("conf") or e.get("config") or {}
        st = e.get("state") or {}
        timers = (e.get("timers") or {}).get("state") or {}
        raw = st.get("session_state", st.get("session-state", 1))
        state = (_SESSION_STATES.get(raw, "Idle") if isinstance(raw, int)
                 else normalize_bgp_state(str(raw)))
        uptime = None
        up = timers.get("uptime")
        if state == "Established" and isinstance(up, dict) and up.get("seconds"):
            uptime = max(0.0, now - float(up["seconds"]))
        elif state == "Established" and isinstance(up, (int, float)) and up:
            uptime = max(0.0, now - float(up))
        received = None
        for af in e.get("afi_safis") or e.get("afi-safis") or []:
            afst = af.get("state") or {}
            fam = (afst.get("family") or {})
            ipv4 = (fam.get("afi") in (1, "AFI_IP")
                    or (af.get("config") or {}).get("afi-safi-name") == "ipv4-unicast")
            if ipv4:  # accepted = received minus what the import policy rejected
                received = parse_int(afst.get("accepted", afst.get("received", 0))) or 0
        peer = (conf.get("neighbor_address") or conf.get("neighbor-address")
                or st.get("neighbor_address"))
        if peer is None:
            continue  # not a neighbour: gobgp always gives the address
        transport = (e.get("transport") or {})
        out.append(BgpSession(
            peer=peer, peer_asn=parse_int(conf.get("peer_asn", conf.get("peer-as"))),
            state=state, uptime=uptime,
            established_count=counts.get(peer, 0),
            prefixes_received=received,
            description=conf.get("description", ""),
            local_address=transport.get("local_address") or transport.get("local-address") or None,
            last_error=None))
    return out


def parse_rib(data: dict[str, list[dict[str, Any]]]) -> list[Route]:
    """`gobgp global rib -a ipv4 -j` -> Route list (all paths; `best` marks the selected one)."""
    out = []
    for prefix, paths in data.items():
        for p in paths:
            nh = None
            med = None
            for a in p.get("attrs", []):
                if a.get("type") == 3:  # NEXT_HOP
                    nh = a.get("nexthop")
                elif a.get("type") == 4:  # MULTI_EXIT_DISC
                    med = parse_int(a.get("metric"))
                elif a.get("type") == 14 and not nh:  # MP_REACH_NLRI
                    nh = a.get("nexthop")
            if nh in ("0.0.0.0", "", None):
                nh = None  # locally originated
            out.append(Route(prefix=prefix, protocol="bgp",
                             nexthops=(NextHop(nh, None),), selected=bool(p.get("best")),
                             metric=med))
    return out
