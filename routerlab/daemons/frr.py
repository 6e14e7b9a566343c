"""FRR 8.4 driver: zebra + staticd + ospfd + bgpd, one set per router, private paths.

Each daemon gets its own config file (zebra.conf, staticd.conf, ospfd.conf, bgpd.conf), pid
file, log file and vty socket in `run_dir/vty/`; they share `run_dir/zserv.api`. No `-N`
pathspace is used, so nothing is written under /var/run/frr. Daemons run as root (CRIU needs
that); FRR then requires root to be in the `frrvty` group, which `ensure_vty_group()` sees to.

zebra installs the learned routes into the namespace's kernel FIB (proto ospf=188, bgp=186,
static=196). Status comes from vtysh's JSON output.
"""
from __future__ import annotations

import grp
import ipaddress
import json
import logging
import os
import re
import shlex
import subprocess
import threading
from pathlib import Path
from typing import Any

from routerlab.expect import ExpectTimeout, wait_for
from routerlab.netns import run as run_root

from .base import (BgpSession, Daemon, DaemonError, NextHop, OspfNeighbor, Route,
                   normalize_bgp_state, normalize_ospf_state, one_line, parse_int)
from .spec import ACCEPT_ALL, Policy, PrefixMatch, RouterSpec, area_id, discard_prefixes

log = logging.getLogger(__name__)

FRR_DIR = Path("/usr/lib/frr")
# ospfd 8.4 keeps a planned graceful restart's state here, keyed by VRF name only (not by
# -N pathspace): one file for every ospfd on the host (see vroom.baseline)
OSPFD_GR_STATE = Path("/var/run/frr/ospfd-gr.json")
VTY_GROUP = "frrvty"
OSPF_RXMT = 2  # seconds; the default 5 makes a lost LSA cost 5 s of convergence
GR_GRACE_S = 120  # OSPF grace period and zebra's -K: how long restarted routes are kept
# glibc returns freed heap to the kernel only above a trim threshold that grows on its own
# (up to 64 MB) once a large block was freed; FRR frees its start-up work (YANG models,
# config parsing) and kept ~1.7 MB of it per zebra. A fixed threshold gives it back.
MALLOC_ENV = {"MALLOC_TRIM_THRESHOLD_": "131072"}

# What a dry run (-C) prints for a bad line; the daemons exit 0 regardless, so we grep.
_CHECK_ERR_RE = re.compile(r"config line \d+|^\s*%|\bline \d+:|error|can't open|cannot open",
                           re.I)

_PROTO = {"connected": "connected", "kernel": "kernel", "static": "static", "ospf": "ospf",
          "bgp": "bgp", "local": "connected"}


def ensure_vty_group(user: str = "root") -> None:
    """FRR daemons run as root refuse to start unless root is in group frrvty; add it.

    (FRR's privs_init checks the user's group list against its compiled-in vty group.)"""
    try:
        members = grp.getgrnam(VTY_GROUP).gr_mem
    except KeyError:
        return  # FRR built without a vty group: nothing to do
    if user in members:
        return
    log.warning("adding %s to group %s (FRR daemons running as root need it)", user, VTY_GROUP)
    run_root(["gpasswd", "-a", user, VTY_GROUP])


def _pl_entry(m: PrefixMatch) -> str:
    lo, hi = m.bounds()
    plen = m.network.prefixlen
    s = m.prefix
    if lo != plen or hi != plen:
        if lo != plen:
            s += f" ge {lo}"
        if hi != 32 or lo == plen:
            s += f" le {hi}"
    return s


class FrrDaemon(Daemon):
    """FRR (zebra, staticd, ospfd, bgpd) for one router."""

    implementation = "frr"
    description = "zebra, staticd, ospfd, bgpd"
    features = frozenset({"bgp", "ospf", "fib", "static", "policy", "redistribute"})
    start_timeout = 25.0
    # bgpd lives on without its listening socket; zebra without netlink is useless
    fatal_log_patterns = (r"bind: Address already in use", r"Can't bind to", r"netlink.*failed")

    #: run the daemons as ONE process tree: a small shell (`TREE_ROOT`) starts them as its
    #: children and waits for them, so CRIU can dump and restore them together (they talk
    #: over zserv Unix sockets): what a VROOM virtual router needs to be live-migrated.
    #: Set it (or pass `process_tree=True`) before `start`.
    process_tree: bool = False
    TREE_ROOT = "frr-tree"  # the tree's parent in `pids`/`processes()`

    def __init__(self, spec: RouterSpec, *, process_tree: bool | None = None):
        super().__init__(spec)
        if process_tree is not None:
            self.process_tree = process_tree

    #: set before `start` when the previous instance stopped after a graceful restart:
    #: zebra then keeps the routes it finds (-K) while the daemons re-learn them
    gr_recover: bool = False

    # ----- rendering -----
    def daemons(self) -> list[str]:
        """The FRR daemons this spec needs, in start order (zebra first)."""
        s = self.spec
        out = ["zebra"]
        # staticd only where there is a static or blackhole route to hold: an OSPF-only
        # router saves a process, its memory, a vty and a -C check. A process tree (a VROOM
        # virtual router) keeps it: routes may be added through it while the VR runs.
        if self.process_tree or s.static_routes or discard_prefixes(s):
            out.append("staticd")
        if s.ospf_enabled:
            out.append("ospfd")
        if s.bgp_enabled:
            out.append("bgpd")
        return out

    def _header(self) -> list[str]:
        return ["frr version 8.4", "frr defaults traditional", f"hostname {self.spec.name}", "!"]

    def render(self) -> dict[str, str]:
        s = self.spec
        files = {"zebra.conf": self._render_zebra(), "staticd.conf": self._render_staticd()}
        if s.ospf_enabled:
            files["ospfd.conf"] = self._render_ospfd()
        if s.bgp_enabled:
            files["bgpd.conf"] = self._render_bgpd()
        extra = s.overrides.get("frr")
        if extra:
            # {"frr": "..."} is appended to bgpd.conf (else ospfd.conf, else zebra.conf)
            target = next(f for f in ("bgpd.conf", "ospfd.conf", "zebra.conf") if f in files)
            files[target] += extra.rstrip() + "\n"
        return files

    def _render_zebra(self) -> str:
        lines = self._header()
        for i in self.spec.interfaces:
            lines += [f"interface {i.name}", " no shutdown", "!"]
        lines += ["line vty", "!"]
        return "\n".join(lines) + "\n"

    def _render_staticd(self) -> str:
        lines = self._header()
        for p in discard_prefixes(self.spec):
            lines.append(f"ip route {p} blackhole")
        for r in self.spec.static_routes:
            if r.via:
                lines.append(f"ip route {r.prefix} {r.via}")
        lines.append("!")
        return "\n".join(lines) + "\n"

    def _render_ospfd(self) -> str:
        s = self.spec
        lines = self._header()
        for i in s.interfaces:
            if i.ospf_area is None:
                continue
            lines += [f"interface {i.name}",
                      f" ip ospf hello-interval {s.ospf_hello}",
                      f" ip ospf dead-interval {s.ospf_dead}",
                      f" ip ospf cost {i.ospf_cost}",
                      f" ip ospf retransmit-interval {OSPF_RXMT}"]
            if i.ospf_network == "point-to-point":
                lines.append(" ip ospf network point-to-point")
            if i.ospf_passive:
                lines.append(" ip ospf passive")
            lines.append("!")
        if s.loopback and s.loopback_area is not None:
            lines += ["interface lo", " ip ospf passive", "!"]
        lines += ["router ospf", f" ospf router-id {s.router_id}"]
        if s.graceful_restart:
            # Grace-LSAs (RFC 3623) are type-9 opaque LSAs: without this ospfd refuses
            # `graceful-restart prepare ip ospf` and does not take part in flooding them
            lines.append(" capability opaque")
        # fast SPF; LSAs no closer than 1 s, because peers (BIRD) drop an instance arriving
        # within MinLSArrival (1 s) of the previous one and then wait for a retransmission
        lines += [" timers throttle spf " + " ".join(str(t) for t in s.ospf_spf_throttle),
                  " timers throttle lsa all 1000",
                  " timers lsa min-arrival 1000"]
        for i in s.interfaces:
            if i.ospf_area is None:
                continue
            lines.append(f" network {i.iface.network} area {area_id(i.ospf_area)}")
        if s.loopback and s.loopback_area is not None:
            lo = ipaddress.IPv4Interface(s.loopback)
            lines.append(f" network {lo.network} area {area_id(s.loopback_area)}")
        for r in s.ospf_redistribute:
            lines.append(f" redistribute {r}")
        if s.graceful_restart:
            lines.append(f" graceful-restart grace-period {GR_GRACE_S}")
            lines.append(" graceful-restart helper enable")
        lines.append("!")
        return "\n".join(lines) + "\n"

    def _render_policy(self, pol: Policy, tag: str) -> tuple[str, list[str]]:
        """A route-map (and its prefix-lists) for a policy; returns (route-map name, lines)."""
        name = f"RM_{tag}"
        lines: list[str] = []
        seq = 10
        for idx, rule in enumerate(pol.rules):
            pl = f"PL_{tag}_{idx}"
            for n, m in enumerate(rule.prefixes):
                lines.append(f"ip prefix-list {pl} seq {5 * (n + 1)} permit {_pl_entry(m)}")
            verb = "permit" if rule.action == "accept" else "deny"
            lines.append(f"route-map {name} {verb} {seq}")
            if rule.prefixes:
                lines.append(f" match ip address prefix-list {pl}")
            if rule.action == "accept":
                if rule.set_local_pref is not None:
                    lines.append(f" set local-preference {rule.set_local_pref}")
                if rule.set_med is not None:
                    lines.append(f" set metric {rule.set_med}")
                if rule.prepend:
                    lines.append(" set as-path prepend " + " ".join([str(self.spec.asn)] * rule.prepend))
            lines.append("exit")
            seq += 10
        lines.append(f"route-map {name} {'permit' if pol.default == 'accept' else 'deny'} 65535")
        lines.append("exit")
        return name, lines

    def _render_bgpd(self) -> str:
        s = self.spec
        lines = self._header()
        rmaps: dict[str, str] = {}
        for nb in s.bgp_neighbors:
            for pol_name in (nb.import_policy, nb.export_policy):
                if pol_name == ACCEPT_ALL or pol_name in rmaps:
                    continue
                rm, pl_lines = self._render_policy(s.policy(pol_name), pol_name)
                rmaps[pol_name] = rm
                lines += pl_lines
        lines += ["!", f"router bgp {s.asn}", f" bgp router-id {s.router_id}",
                  " bgp log-neighbor-changes",
                  # policies are explicit in the spec; RFC 8212's implicit deny would hide that
                  " no bgp ebgp-requires-policy",
                  " no bgp default ipv4-unicast"]
        if s.graceful_restart:
            lines += [" bgp graceful-restart", " bgp graceful-restart preserve-fw-state"]
        for nb in s.bgp_neighbors:
            p = nb.peer
            lines.append(f" neighbor {p} remote-as {nb.asn}")
            if nb.description:
                lines.append(f" neighbor {p} description {nb.description}")
            local = s.local_address_for(nb)
            if nb.local_address:
                lines.append(f" neighbor {p} update-source {local}")
            lines.append(f" neighbor {p} timers {nb.keepalive} {nb.hold}")
            lines.append(f" neighbor {p} timers connect {nb.connect_retry}")
            lines.append(f" neighbor {p} advertisement-interval 0")
            if nb.ebgp_multihop:
                lines.append(f" neighbor {p} ebgp-multihop {nb.ebgp_multihop}")
            if nb.passive:
                lines.append(f" neighbor {p} passive")
        lines.append(" !")
        lines.append(" address-family ipv4 unicast")
        for n in s.networks:
            lines.append(f"  network {n.prefix}")
        for r in s.bgp_redistribute:
            lines.append(f"  redistribute {r}")
        for nb in s.bgp_neighbors:
            p = nb.peer
            lines.append(f"  neighbor {p} activate")
            if nb.next_hop_self:
                lines.append(f"  neighbor {p} next-hop-self")
            if nb.import_policy != ACCEPT_ALL:
                lines.append(f"  neighbor {p} route-map {rmaps[nb.import_policy]} in")
            if nb.export_policy != ACCEPT_ALL:
                lines.append(f"  neighbor {p} route-map {rmaps[nb.export_policy]} out")
        lines += [" exit-address-family", "!"]
        return "\n".join(lines) + "\n"

    # ----- paths -----
    @property
    def vty_dir(self) -> Path:
        assert self.run_dir is not None
        return self.run_dir / "vty"

    def _socket_paths(self) -> list[Path]:
        assert self.run_dir is not None
        return [self.run_dir / "zserv.api"] + [self.vty_dir / f"{d}.vty" for d in self.daemons()]

    def _prepare_dir(self, directory: Path) -> None:
        self.machine.mkdir(directory / "vty")

    def _daemon_args(self, daemon: str, directory: Path, dryrun: bool = False) -> list[str]:
        args = [str(FRR_DIR / daemon), "-u", "root", "-g", "root",
                "-f", str(directory / f"{daemon}.conf"),
                "-i", str(directory / f"{daemon}.pid"),
                "-z", str(directory / "zserv.api"),
                "--vty_socket", str(directory / "vty"),
                "-P", "0"]  # no TCP vty: namespaces must not each listen on 260x
        if dryrun:
            args += ["-C", "--log", "stdout"]
            if daemon == "ospfd" and os.geteuid() == 0:  # (unshare needs root)
                # `ospfd -C` runs `router ospf` for real, which reads AND deletes the planned
                # graceful restart recorded in OSPFD_GR_STATE (one file for the host): a check
                # must not take a restarting router's state, so it sees an empty directory
                args = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                        f'mount -t tmpfs routerlab-check {OSPFD_GR_STATE.parent} 2>/dev/null; '
                        'exec "$@"', "ospfd-check", *args]
            return args
        args += ["--log", f"file:{directory / (daemon + '.log')}", "--log-level", "info"]
        if daemon == "bgpd":
            args += ["-p", "179"]
        if daemon == "zebra" and self.spec.graceful_restart:
            args.append("-r")  # retain: the FIB stays when zebra exits (a graceful restart)
            if self.gr_recover:  # keep what the previous zebra left until the grace period ends
                args += ["-K", str(GR_GRACE_S)]
        return args

    # ----- validation -----
    def _check_config(self, directory: Path) -> None:
        ensure_vty_group()
        for d in self.daemons():
            shape = config_shape(d, self.machine.read_text(directory / f"{d}.conf"))
            if not self.spec.overrides.get("frr") and shape in _CHECKED_SHAPES:
                continue
            r = self.machine.run(self._daemon_args(d, directory, dryrun=True), check=False, timeout=30)
            out = (r.stdout + r.stderr).strip()
            # the daemons print each complaint on stdout and stderr: keep one of each
            errs = list(dict.fromkeys(ln for ln in out.splitlines() if _CHECK_ERR_RE.search(ln)))
            if r.returncode != 0 or errs:
                raise DaemonError(f"frr {self.spec.name}: {d}.conf rejected by {d} -C: "
                                  f"{one_line(chr(10).join(errs or out.splitlines()[-3:]))}")
            with _CHECKED_LOCK:
                _CHECKED_SHAPES.add(shape)

    # ----- lifecycle -----
    def _launch(self) -> None:
        ensure_vty_group()
        assert self.run_dir is not None
        self.machine.unlink(*self._socket_paths())
        if self.process_tree:
            self._launch_tree()
            return
        for d in self.daemons():
            self._popen(d, self._daemon_args(d, self.run_dir), env=MALLOC_ENV)
            if d == "zebra" and self._wait_zserv(self.run_dir / "zserv.api", 10) == "dead":
                return

    def _launch_tree(self) -> None:
        """The daemons as children of one `sh` (see `tree_script`), found by name once running."""
        assert self.run_dir is not None
        progs = [(d, self._daemon_args(d, self.run_dir), self.run_dir / f"{d}.out")
                 for d in self.daemons()]
        self._popen_tree(self.TREE_ROOT, ["sh", "-c", tree_script(progs, self.run_dir / "zserv.api")],
                         log_path=self.run_dir / f"{self.TREE_ROOT}.out")
        self._adopt_children(self.daemons(), 20)  # wait_ready reports a parent that died

    def _wait_zserv(self, sock: Path, timeout: float) -> str | None:
        """Wait for zebra's ZAPI socket: "up", "dead" (a process exited) or None (timed out: the
        other daemons retry ZAPI, but connecting at once keeps start-up short)."""

        def state() -> str | None:
            if self.machine.exists(sock):
                return "up"
            return "dead" if self.dead_processes() else None

        try:
            return wait_for(state, timeout, interval=0.05, what=f"zebra's {sock.name}", retry_on=())
        except ExpectTimeout:
            return None

    def _ready(self) -> bool:
        have = {p.name for p in self.machine.glob(self.vty_dir, "*.vty")}
        if not all(f"{d}.vty" in have for d in self.daemons()):
            return False
        # every daemon answers on its own vty socket (asked directly: vtysh would cost a
        # 30-60 ms process start per poll, which adds up over hundreds of routers)
        for d in self.daemons():
            try:
                self.vty(d, "show version", timeout=2.0)
            except DaemonError:
                return False
        return True

    def _after_stop(self) -> None:
        if self.run_dir is None:
            return
        self.machine.unlink(*self._socket_paths())

    # ----- queries -----
    def vtysh(self, command: str, check: bool = True, timeout: float = 15.0) -> str:
        """Run one vtysh command against this instance and return its output."""
        r = self._run(["vtysh", "--vty_socket", str(self.vty_dir), "-c", command],
                      timeout=timeout, check=False)
        out = r.stdout
        if check and (r.returncode != 0 or out.lstrip().startswith("%")):
            raise DaemonError(f"frr {self.spec.name}: vtysh -c {command!r}: "
                              f"{r.stderr.strip() or out.strip() or 'exit ' + str(r.returncode)}")
        return out

    def vtysh_json(self, command: str, daemon: str | None = None) -> Any:
        """A `show ... json` command's answer; with `daemon`, asked of that daemon's vty
        socket directly (`vty`) instead of through vtysh."""
        out = self.vty(daemon, command) if daemon else self.vtysh(command)
        try:
            return json.loads(out) if out.strip() else {}
        except json.JSONDecodeError as e:
            raise DaemonError(f"frr {self.spec.name}: {command!r} gave no JSON ({e}): "
                              f"{out[:200]}") from None

    def vty(self, daemon: str, command: str, timeout: float = 15.0) -> str:
        """Run one command on one daemon's vty socket, speaking vtysh's own protocol (the
        command NUL-terminated; the answer ends with three NULs and the command's status
        byte). ~0.3 ms instead of a vtysh process; DaemonError unless the status is 0."""
        path = self.vty_dir / f"{daemon}.vty"
        buf = bytearray()
        try:
            with self.machine.connect_unix(path, timeout) as sock:
                sock.sendall(command.encode() + b"\0")
                while not (len(buf) >= 4 and buf[-4:-1] == b"\0\0\0"):
                    chunk = sock.recv(1 << 16)
                    if not chunk:
                        raise OSError("connection closed before the end of the answer")
                    buf += chunk
        except OSError as e:
            raise DaemonError(f"frr {self.spec.name}: {daemon} vty {command!r}: {e}") from None
        out = buf[:-4].decode(errors="replace")
        if buf[-1] != 0:
            raise DaemonError(f"frr {self.spec.name}: {daemon} vty {command!r}: "
                              f"{out.strip() or 'status ' + str(buf[-1])}")
        return out

    def cli(self, command: str) -> str:
        return self.vtysh(command, check=False)

    def ospf_neighbors(self) -> list[OspfNeighbor]:
        if not self.spec.ospf_enabled:
            return []
        return parse_ospf_neighbors(self.vtysh_json("show ip ospf neighbor json", "ospfd"))

    def ospf_quiet_s(self) -> float:
        """Seconds since this router last ran SPF or saw a new LSA instance (the smaller).

        Once it exceeds the SPF and LSA throttles' longest hold (1 s here), the next event
        is handled with the initial delays: the network is in steady state."""
        status = self.vtysh_json("show ip ospf json")
        db = self.vtysh_json("show ip ospf database json")
        return ospf_quiet_s(status, db)

    def bgp_sessions(self) -> list[BgpSession]:
        if not self.spec.bgp_enabled:
            return []
        return parse_bgp_neighbors(self.vtysh_json("show ip bgp neighbors json", "bgpd"))

    def routes(self) -> list[Route]:
        return parse_routes(self.vtysh_json("show ip route json"))

    @classmethod
    def version(cls) -> str | None:
        exe = FRR_DIR / "zebra"
        if not exe.exists():
            return None
        r = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=10)
        m = re.search(r"version\s+(\S+)", r.stdout + r.stderr)
        return m.group(1) if m else None


# Configuration shapes a `-C` dry run accepted in this process. A config rendered from a
# validated spec differs from an accepted one of the same shape only in names and numbers
# the spec checks (addresses, costs, timers, ASNs), so the daemon is not run again for it:
# 143 routers of a Topology Zoo graph have ~6 shapes (one per degree), and each dry run is
# a full daemon start-up (~40 ms of CPU). Raw `overrides` text is always checked.
_CHECKED_SHAPES: set[tuple[str, str]] = set()
_CHECKED_LOCK = threading.Lock()


def config_shape(daemon: str, text: str) -> tuple[str, str]:
    """`daemon`'s config `text` with every number, interface name and the hostname
    abstracted: two configs of one shape say the same things about different values."""
    text = re.sub(r"^hostname .*$", "hostname H", text, flags=re.M)
    text = re.sub(r"\b\S+-eth\d+\b", "IF", text)
    return daemon, re.sub(r"\d+", "N", text)


def tree_script(programs: list[tuple[str, list[str], Path]], zserv: Path) -> str:
    """The `sh -c` script of a process tree: the first program (zebra) in the background,
    then (once its ZAPI socket `zserv` exists) the others, then wait for them all. Exits 1
    when the first dies before its socket appears. Kept tiny: CRIU dumps it too."""
    def bg(args: list[str], out: Path) -> str:
        return f"{shlex.join(args)} >{shlex.quote(str(out))} 2>&1 &"

    (_, args0, out0), rest = programs[0], programs[1:]
    z = shlex.quote(str(zserv))
    lines = [bg(args0, out0), "z=$!",
             f"while [ ! -S {z} ]; do kill -0 $z 2>/dev/null || exit 1; sleep 0.05; done"]
    lines += [bg(args, out) for _, args, out in rest]
    lines.append("wait")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------
# Parsers (pure; unit-tested against recorded vtysh output)
# ----------------------------------------------------------------------------------------

def ospf_quiet_s(status: dict[str, Any], database: dict[str, Any]) -> float:
    """From `show ip ospf json` and `show ip ospf database json`: seconds since the last SPF
    run or the youngest LSA, whichever is more recent (0 when SPF never ran)."""
    spf_ms = status.get("spfLastExecutedMsecs")
    quiet = float(spf_ms) / 1000 if spf_ms is not None else 0.0
    for area in (database.get("areas") or {}).values():
        for lsas in area.values():
            if isinstance(lsas, list):
                for lsa in lsas:
                    if isinstance(lsa, dict) and "lsaAge" in lsa:
                        quiet = min(quiet, float(lsa["lsaAge"]))
    return quiet


def parse_ospf_neighbors(data: dict[str, Any]) -> list[OspfNeighbor]:
    """`show ip ospf neighbor json` -> OspfNeighbor list."""
    out = []
    for rid, entries in (data.get("neighbors") or {}).items():
        if isinstance(entries, dict):
            entries = [entries]
        for e in entries:
            state, role = normalize_ospf_state(e.get("nbrState") or e.get("state", ""))
            if role is None and e.get("role"):
                role = e["role"]
            up = e.get("upTimeInMsec")
            iface = e.get("ifaceName") or e.get("interfaceName")
            if iface and ":" in iface:
                iface = iface.split(":")[0]  # "r1-eth0:10.0.12.1" -> interface name
            out.append(OspfNeighbor(router_id=rid, address=e.get("ifaceAddress") or e.get("address"),
                                    interface=iface, state=state, role=role,
                                    uptime=up / 1000.0 if isinstance(up, (int, float)) else None))
    return out


def parse_bgp_neighbors(data: dict[str, Any]) -> list[BgpSession]:
    """`show ip bgp neighbors json` -> BgpSession list."""
    out = []
    for peer, e in data.items():
        if not isinstance(e, dict) or "bgpState" not in e:
            continue
        state = normalize_bgp_state(e.get("bgpState", ""))
        up = e.get("bgpTimerUpMsec") if state == "Established" else None
        af = (e.get("addressFamilyInfo") or {}).get("ipv4Unicast") or {}
        err = e.get("lastResetDueTo") or e.get("lastErrorCodeSubcode")
        out.append(BgpSession(
            peer=peer, peer_asn=parse_int(e.get("remoteAs")), state=state,
            uptime=up / 1000.0 if isinstance(up, (int, float)) else None,
            established_count=parse_int(e.get("connectionsEstablished")),
            prefixes_received=parse_int(af.get("acceptedPrefixCounter")),
            description=e.get("nbrDesc", ""),
            local_address=e.get("hostLocal") if e.get("hostLocal") not in (None, "", "Unknown") else None,
            last_error=err or None))
    return out


def parse_routes(data: dict[str, Any]) -> list[Route]:
    """`show ip route json` -> Route list (every candidate; `selected` marks the best)."""
    out = []
    for prefix, entries in data.items():
        for e in entries:
            nhs = []
            for nh in e.get("nexthops", []):
                nhs.append(NextHop(address=nh.get("ip"), interface=nh.get("interfaceName"),
                                   blackhole=bool(nh.get("unreachable") or nh.get("blackhole"))))
            out.append(Route(prefix=prefix, protocol=_PROTO.get(e.get("protocol", ""), "other"),
                             nexthops=tuple(nhs), selected=bool(e.get("selected")),
                             metric=parse_int(e.get("metric")),
                             distance=parse_int(e.get("distance"))))
    return out
