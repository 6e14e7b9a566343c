"""BIRD 2 driver: one `bird -f` process per router, queried through its control socket.

BIRD's kernel protocol exports every non-connected route into the namespace's kernel FIB
(proto bird = 12) with `merge paths` for ECMP. birdc has no JSON output: the parsers below
read its text (`show protocols all`, `show ospf neighbors`, `show route all`).

How often a BGP session came up: BIRD keeps no counter, so every BGP protocol is rendered
with `debug { states }` and the driver counts that protocol's "State changed to up" lines in
BIRD's own log file (truncated at each start, so the count is per daemon lifetime, like
FRR's `connectionsEstablished`).
"""
from __future__ import annotations

import ipaddress
import logging
import re
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from .base import (BgpSession, Daemon, DaemonError, NextHop, OspfNeighbor, Route,
                   normalize_bgp_state, normalize_ospf_state, one_line, parse_int)
from .spec import Policy, PrefixMatch, RouterSpec, area_id, discard_prefixes

log = logging.getLogger(__name__)

_SOURCES = {"connected": ["RTS_DEVICE"], "static": ["RTS_STATIC"],
            "ospf": ["RTS_OSPF", "RTS_OSPF_IA", "RTS_OSPF_EXT1", "RTS_OSPF_EXT2"],
            "bgp": ["RTS_BGP"]}
_PROTO_TYPES = {"direct": "connected", "device": "other", "static": "static", "ospf": "ospf",
                "bgp": "bgp", "kernel": "kernel"}


def bgp_protocol_name(peer: str) -> str:
    """The BIRD protocol name used for the session with `peer` (a BIRD symbol)."""
    return "bgp_" + peer.replace(".", "_")


def _prefix_set(matches: Iterable[PrefixMatch]) -> str:
    items = []
    for m in matches:
        lo, hi = m.bounds()
        plen = m.network.prefixlen
        items.append(m.prefix if lo == hi == plen else f"{m.prefix}{{{lo},{hi}}}")
    return "[ " + ", ".join(items) + " ]"


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class BirdDaemon(Daemon):
    """BIRD 2 (`bird -f`) for one router."""

    implementation = "bird"
    description = "OSPF, BGP, kernel FIB"
    features = frozenset({"bgp", "ospf", "fib", "static", "policy", "redistribute"})
    #: set before `start` when the previous instance ended with `birdc graceful restart`
    gr_recover: bool = False

    def __init__(self, spec: RouterSpec, kernel_scan: int = 10):
        """`kernel_scan`: seconds between two scans of the kernel table, in which BIRD dumps
        the whole table and puts back what another process changed. 10 s suits the small
        topologies; a scan of a 1,000,000-route table costs ~2 s of CPU (dump and compare),
        so a router whose kernel table nobody else writes (a VERB replica) scans rarely."""
        super().__init__(spec)
        self.kernel_scan = kernel_scan

    # ----- rendering -----
    def _policy_body(self, pol: Policy, indent: str) -> list[str]:
        out = []
        asn = self.spec.asn
        for rule in pol.rules:
            acts = []
            if rule.action == "accept":
                if rule.set_local_pref is not None:
                    acts.append(f"bgp_local_pref = {rule.set_local_pref};")
                if rule.set_med is not None:
                    acts.append(f"bgp_med = {rule.set_med};")
                acts += [f"bgp_path.prepend({asn});"] * rule.prepend
                acts.append("accept;")
            else:
                acts.append("reject;")
            cond = f"net ~ {_prefix_set(rule.prefixes)}" if rule.prefixes else "true"
            out.append(f"{indent}if {cond} then {{ {' '.join(acts)} }}")
        out.append(f"{indent}{'accept' if pol.default == 'accept' else 'reject'};")
        return out

    def render(self) -> dict[str, str]:
        s = self.spec
        L: list[str] = [f"# BIRD 2 configuration for router {s.name}, rendered by routerlab",
                        f"log {_q(str(self.config_dir / 'bird.log'))} all;", f"router id {s.router_id};",
                        # epoch seconds in `show protocols` give honest uptimes
                        'timeformat protocol "%s";', "timeformat route iso long;", "",
                        "protocol device device1 { scan time 10; }", "",
                        "protocol direct direct1 {",
                        "  ipv4 { import where net !~ 127.0.0.0/8; };",
                        '  interface "*";', "}", "",
                        "protocol kernel kernel1 {",
                        # connected routes are the kernel's own; everything else goes in
                        "  ipv4 { import none; export where source != RTS_DEVICE; };",
                        f"  scan time {self.kernel_scan};", "  merge paths on;"]
        if s.graceful_restart:
            L.append("  graceful restart on;")
        L += ["}", ""]
        statics = [f"  route {p} blackhole;" for p in discard_prefixes(s)]
        statics += [f"  route {r.prefix} via {r.via};" for r in s.static_routes if r.via]
        L += ["protocol static static1 {", "  ipv4;", *statics, "}", ""]
        if s.ospf_enabled:
            L += self._render_ospf()
        if s.bgp_enabled:
            L += self._render_bgp()
        extra = s.overrides.get("bird")
        if extra:
            L.append(extra.rstrip())
        return {"bird.conf": "\n".join(L) + "\n"}

    def _render_ospf(self) -> list[str]:
        s = self.spec
        areas: dict[str, list[str]] = {}
        for i in s.interfaces:
            if i.ospf_area is None:
                continue
            opts = [f"cost {i.ospf_cost};", f"hello {s.ospf_hello};", f"dead {s.ospf_dead};", "retransmit 2;",
                    f"type {'ptp' if i.ospf_network == 'point-to-point' else 'broadcast'};"]
            if i.ospf_passive:
                opts.append("stub yes;")
            areas.setdefault(area_id(i.ospf_area), []).append(
                f'    interface {_q(i.name)} {{ {" ".join(opts)} }};')
        if s.loopback and s.loopback_area is not None:
            lo = ipaddress.IPv4Interface(s.loopback)
            # the prefix pattern keeps 127.0.0.1/8 on lo out of OSPF
            areas.setdefault(area_id(s.loopback_area), []).append(
                f'    interface "lo" {lo.network} {{ stub yes; }};')
        srcs = [src for r in s.ospf_redistribute for src in _SOURCES[r]]
        export = f"where source ~ [ {', '.join(srcs)} ]" if srcs else "none"
        L = ["protocol ospf v2 ospf1 {", "  ecmp yes;", "  tick 1;",
             f"  ipv4 {{ import all; export {export}; }};"]
        if s.graceful_restart:
            L.append("  graceful restart yes;")
        for area, ifaces in areas.items():
            L += [f"  area {area} {{", *ifaces, "  };"]
        L += ["}", ""]
        return L

    def _render_bgp(self) -> list[str]:
        s = self.spec
        L: list[str] = []
        originated = [n.prefix for n in s.networks]
        conds = ["source = RTS_BGP"]
        if originated:
            conds.append(f"net ~ [ {', '.join(originated)} ]")
        srcs = [src for r in s.bgp_redistribute for src in _SOURCES[r]]
        if srcs:
            conds.append(f"source ~ [ {', '.join(srcs)} ]")
        for nb in s.bgp_neighbors:
            local = s.local_address_for(nb)
            L += [f"protocol bgp {bgp_protocol_name(nb.peer)} {{"]
            if nb.description:
                L.append(f"  description {_q(nb.description)};")
            L += [f"  local {local + ' ' if local else ''}as {s.asn};",
                  f"  neighbor {nb.peer} as {nb.asn};",
                  f"  hold time {nb.hold};", f"  keepalive time {nb.keepalive};",
                  f"  connect retry time {nb.connect_retry};",
                  # the log lines the established-count is taken from
                  "  debug { states };"]
            if nb.ebgp_multihop:
                L.append(f"  multihop {nb.ebgp_multihop};")
            if nb.passive:
                L.append("  passive on;")
            if s.graceful_restart:
                L.append("  graceful restart on;")
            L += ["  ipv4 {", "    import filter {",
                  *self._policy_body(s.policy(nb.import_policy), "      "),
                  "    };", "    export filter {",
                  f"      if !({' || '.join(conds)}) then reject;",
                  *self._policy_body(s.policy(nb.export_policy), "      "),
                  "    };"]
            if nb.next_hop_self:
                L.append("    next hop self;")
            L += ["  };", "}", ""]
        return L

    # ----- validation / lifecycle -----
    def _check_config(self, directory: Path) -> None:
        r = self.machine.run(["bird", "-p", "-c", str(directory / "bird.conf")], check=False, timeout=30)
        if r.returncode != 0:
            raise DaemonError(f"bird {self.spec.name}: bird.conf rejected by bird -p: "
                              f"{one_line(r.stderr or r.stdout)}")

    @property
    def ctl(self) -> Path:
        assert self.run_dir is not None
        return self.run_dir / "bird.ctl"

    def _socket_paths(self) -> list[Path]:
        return [self.ctl]

    def _launch(self) -> None:
        assert self.run_dir is not None
        self.machine.unlink(self.ctl)
        self._popen("bird", self.launch_args(self.run_dir))

    def launch_args(self, directory: Path) -> list[str]:
        """The command line of `bird` running from `directory`."""
        args = ["bird", "-f", "-c", str(directory / "bird.conf"), "-s", str(directory / "bird.ctl"),
                "-P", str(directory / "bird.pid")]
        if self.gr_recover and self.spec.graceful_restart:
            # recovery after `birdc graceful restart`: the kernel protocol keeps the routes it
            # finds until the protocols have converged, OSPF restarts gracefully (RFC 3623)
            # instead of originating a fresh router-LSA at once, BGP tells its peers
            args.append("-R")
        return args

    def _ready(self) -> bool:
        return self.machine.exists(self.ctl) and "Daemon is up and running" in self.birdc("show status")

    def _after_stop(self) -> None:
        if self.run_dir is not None:
            self.machine.unlink(self.ctl)

    # ----- queries -----
    def birdc(self, command: str, timeout: float = 15.0) -> str:
        """Run one birdc command against this instance; returns its text."""
        r = self._run(["birdc", "-s", str(self.ctl), *command.split()], timeout=timeout,
                      check=False)
        if r.returncode != 0:
            raise DaemonError(f"bird {self.spec.name}: birdc {command!r}: "
                              f"{(r.stderr or r.stdout).strip()}")
        return r.stdout

    def cli(self, command: str) -> str:
        return self.birdc(command)

    def ospf_neighbors(self) -> list[OspfNeighbor]:
        if not self.spec.ospf_enabled:
            return []
        return parse_ospf_neighbors(self.birdc("show ospf neighbors"))

    def bgp_sessions(self) -> list[BgpSession]:
        if not self.spec.bgp_enabled:
            return []
        counts = count_established(self._log_text())
        return parse_bgp_protocols(self.birdc("show protocols all"), counts, now=time.time())

    def routes(self) -> list[Route]:
        types = parse_protocol_types(self.birdc("show protocols"))
        return parse_routes(self.birdc("show route all", timeout=60), types)

    def _log_text(self) -> str:
        if self.run_dir is None:
            return ""
        try:
            return self.machine.read_text(self.run_dir / "bird.log", errors="replace")
        except FileNotFoundError:
            return ""

    @classmethod
    def version(cls) -> str | None:
        try:
            r = subprocess.run(["bird", "--version"], capture_output=True, text=True, timeout=10)
        except FileNotFoundError:
            return None
        m = re.search(r"version\s+(\S+)", r.stdout + r.stderr)
        return m.group(1) if m else None


# ----------------------------------------------------------------------------------------
# Parsers (pure; unit-tested against recorded birdc output)
# ----------------------------------------------------------------------------------------

def _strip_codes(text: str) -> list[str]:
    """birdc output lines without the banner and without numeric reply codes, if any."""
    out = []
    for ln in text.splitlines():
        if ln.startswith("BIRD ") and "ready." in ln:
            continue
        m = re.match(r"^\d{4}[- ](.*)$", ln)
        out.append(m.group(1) if m else ln)
    return out


def parse_ospf_neighbors(text: str) -> list[OspfNeighbor]:
    """`show ospf neighbors` -> OspfNeighbor list (BIRD reports no adjacency uptime)."""
    out = []
    for ln in _strip_codes(text):
        f = ln.split()
        if len(f) >= 6 and re.match(r"^\d+\.\d+\.\d+\.\d+$", f[0]) and f[1].isdigit():
            state, role = normalize_ospf_state(f[2])
            out.append(OspfNeighbor(router_id=f[0], address=f[5], interface=f[4], state=state,
                                    role=role, uptime=None))
    return out


def parse_protocol_types(text: str) -> dict[str, str]:
    """`show protocols` -> {protocol name: normalized route protocol}."""
    out = {}
    for ln in _strip_codes(text):
        f = ln.split()
        if len(f) >= 2 and f[0] != "Name":
            out[f[0]] = _PROTO_TYPES.get(f[1].lower(), "other")
    return out


_STATE_UP_RE = re.compile(r"^(?:\S+ \S+ )?<\w+> (\S+): State changed to up\s*$")


def count_established(log_text: str) -> dict[str, int]:
    """How many times each protocol went up, from BIRD's `debug { states }` log lines."""
    counts: dict[str, int] = {}
    for ln in log_text.splitlines():
        m = _STATE_UP_RE.match(ln.strip())
        if m:
            counts[m.group(1)] = counts.get(m.group(1), 0) + 1
    return counts


def parse_bgp_protocols(text: str, established_counts: dict[str, int] | None = None,
                        now: float | None = None) -> list[BgpSession]:
    """`show protocols all` -> BgpSession list (only BGP protocols).

    `since` is parsed as epoch seconds (the driver renders `timeformat protocol "%s"`)."""
    now = time.time() if now is None else now
    counts = established_counts or {}
    out = []
    blocks: list[list[str]] = []
    for ln in _strip_codes(text):
        if ln and not ln[0].isspace() and not ln.startswith("Name "):
            blocks.append([ln])
        elif blocks:
            blocks[-1].append(ln)
    for blk in blocks:
        head = blk[0].split()
        if len(head) < 4 or head[1] != "BGP":
            continue
        name, proto_state = head[0], head[3]
        since = float(head[4]) if len(head) > 4 and re.match(r"^\d+(\.\d+)?$", head[4]) else None
        kv: dict[str, str] = {}
        for ln in blk[1:]:
            m = re.match(r"^\s+([A-Za-z][A-Za-z0-9 ./-]*?):\s+(.*)$", ln)
            if m:
                kv.setdefault(m.group(1).strip(), m.group(2).strip())
        bgp_state = kv.get("BGP state", "Idle" if proto_state == "down" else "Active")
        state = normalize_bgp_state(bgp_state)
        imported = None
        m = re.search(r"(\d+) imported", kv.get("Routes", ""))
        if m:
            imported = int(m.group(1))
        elif state == "Established":
            imported = 0
        # `Routes:` counts routes accepted by the import filter; received = imported + filtered
        filtered = re.search(r"(\d+) filtered", kv.get("Routes", ""))
        if imported is not None and filtered:
            imported += int(filtered.group(1))
        out.append(BgpSession(
            peer=kv.get("Neighbor address", name.removeprefix("bgp_").replace("_", ".")),
            peer_asn=parse_int(kv.get("Neighbor AS")),
            state=state,
            uptime=max(0.0, now - since) if state == "Established" and since else None,
            established_count=counts.get(name, 0),
            prefixes_received=imported,
            description=kv.get("Description", ""),
            local_address=kv.get("Source address"),
            last_error=kv.get("Last error")))
    return out


_ROUTE_HEAD_RE = re.compile(
    r"^(?P<prefix>\d+\.\d+\.\d+\.\d+/\d+)?\s+(?P<kind>unicast|blackhole|unreachable|prohibited)\s+"
    r"\[(?P<proto>\S+)\s[^\]]*\]\s*(?P<best>\*)?\s*(?:\w+\s+)?\((?P<pref>\d+)(?:/(?P<metric>\d+))?\)")


def parse_routes(text: str, proto_types: dict[str, str] | None = None) -> list[Route]:
    """`show route all` -> Route list. Alternatives (no '*') come out with selected=False."""
    types = proto_types or {}
    routes: list[dict] = []
    prefix = None
    for ln in _strip_codes(text):
        if not ln.strip() or ln.startswith("Table "):
            continue
        m = _ROUTE_HEAD_RE.match(ln)
        if m:
            prefix = m.group("prefix") or prefix
            proto = m.group("proto")
            ptype = types.get(proto) or next(
                (v for k, v in _PROTO_TYPES.items() if proto.startswith(k)), "other")
            nhs = [NextHop(None, None, blackhole=True)] if m.group("kind") != "unicast" else []
            routes.append({"prefix": prefix, "protocol": ptype, "nexthops": nhs,
                           "selected": bool(m.group("best")),
                           "metric": parse_int(m.group("metric")), "attrs": {}})
            continue
        if not routes or not ln[:1].isspace():
            continue
        body = ln.strip()
        m = re.match(r"^via (\S+) on (\S+)", body)
        if m:
            routes[-1]["nexthops"].append(NextHop(m.group(1), m.group(2)))
            continue
        m = re.match(r"^dev (\S+)", body)
        if m:
            routes[-1]["nexthops"].append(NextHop(None, m.group(1)))
            continue
        m = re.match(r"^([\w.]+):\s*(.*)$", body)
        if m:
            routes[-1]["attrs"][m.group(1)] = m.group(2)
    out = []
    for r in routes:
        metric = r["metric"]
        if metric is None and r["protocol"] == "bgp":
            metric = parse_int(r["attrs"].get("BGP.med", 0))
        out.append(Route(prefix=r["prefix"], protocol=r["protocol"], nexthops=tuple(r["nexthops"]),
                         selected=r["selected"], metric=metric))
    return out
