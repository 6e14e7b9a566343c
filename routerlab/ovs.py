"""Open vSwitch bridges (userspace datapath, OpenFlow 1.3) and bulk flow installation.

This machine kind has no openvswitch kernel module, so every bridge uses the userspace
(`netdev`) datapath; it is pinned to OpenFlow 1.3 and in-band control is disabled so that a
controller on 127.0.0.1 is reachable. Bridges are recorded in the registry before creation.
"""
from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass
from typing import Iterable, Sequence

from routerlab import registry
from routerlab.errors import UserError
from routerlab.netns import CommandError, run

log = logging.getLogger(__name__)

OF = "OpenFlow13"


OVS_NOT_RUNNING = ("Open vSwitch is not running (ovs-vsctl cannot reach its database): "
                   "run `scripts/setup.sh` (or `/usr/share/openvswitch/scripts/ovs-ctl start`)")


def vsctl(*args: str, check: bool = True, timeout: float = 30) -> str:
    try:
        return run(["ovs-vsctl", "-t", str(int(timeout)), *args], check=check,
                   timeout=timeout + 5).stdout
    except CommandError as e:
        if "database connection failed" in str(e):
            raise UserError(OVS_NOT_RUNNING) from None
        raise


def ofctl(*args: str, check: bool = True, timeout: float = 120) -> str:
    return run(["ovs-ofctl", "-O", OF, *args], check=check, timeout=timeout).stdout


def ofctl_file(verb: str, bridge: str, lines: Iterable[str], *, bundle: bool = False,
               timeout: float = 600, skip_empty: bool = False) -> tuple[int, float]:
    """``ovs-ofctl [--bundle] VERB BRIDGE FILE`` with `lines` written to FILE, one a line
    (one call however many flows or groups). Returns (line count, seconds ovs-ofctl took).
    With `skip_empty` no lines means no call (not for ``replace-flows``, where an empty file
    empties the table)."""
    fd, path = tempfile.mkstemp(prefix="routerlab-flows-", suffix=".txt")
    n = 0
    try:
        with os.fdopen(fd, "w") as f:
            for ln in lines:
                f.write(ln)
                f.write("\n")
                n += 1
        if n == 0 and skip_empty:
            return 0, 0.0
        t0 = time.monotonic()
        ofctl(*(["--bundle"] if bundle else []), verb, bridge, path, timeout=timeout)
        return n, time.monotonic() - t0
    finally:
        os.unlink(path)


def ovs_running() -> bool:
    try:
        vsctl("show", timeout=3)
        return True
    except (CommandError, UserError, OSError):
        return False


class Bridge:
    """A userspace OVS bridge that routerlab created."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"Bridge({self.name!r})"

    @classmethod
    def create(cls, name: str, *, dpid: str | None = None, controller: str | None = None,
               fail_mode: str = "secure", mtu_request: int | None = None) -> "Bridge":
        """Create a bridge: userspace datapath, OpenFlow 1.3, no in-band control.

        ``fail_mode`` secure means no flows until someone installs them (a controller or
        routerlab itself); standalone makes it a learning switch."""
        if len(name) > 15:
            raise ValueError(f"bridge name {name!r} is longer than 15 characters")
        if registry.ovs_bridge_exists(name):
            raise FileExistsError(f"OVS bridge {name!r} already exists (left by another run? "
                                  f"try `routerlab clean`)")
        registry.session().add("bridge", name)
        args = ["add-br", name, "--", "set", "bridge", name, "datapath_type=netdev",
                f"protocols={OF}", f"fail_mode={fail_mode}",
                "other-config:disable-in-band=true"]
        if dpid:
            args += [f"other-config:datapath-id={dpid}"]
        if mtu_request:
            args += ["--", "set", "interface", name, f"mtu_request={mtu_request}"]
        vsctl(*args)
        br = cls(name)
        if controller:
            br.set_controller(controller)
        return br

    def set_controller(self, *targets: str) -> None:
        vsctl("set-controller", self.name, *targets)

    def add_port(self, ifname: str, ofport: int | None = None, mtu: int | None = None) -> int:
        """Attach an existing interface; returns its OpenFlow port number."""
        args = ["add-port", self.name, ifname]
        if ofport is not None or mtu is not None:
            args += ["--", "set", "interface", ifname]
            if ofport is not None:
                args.append(f"ofport_request={ofport}")
            if mtu is not None:
                args.append(f"mtu_request={mtu}")
        vsctl(*args)
        return self.ofport(ifname)

    def del_port(self, ifname: str) -> None:
        vsctl("--if-exists", "del-port", self.name, ifname)

    def ofport(self, ifname: str, timeout: float = 10) -> int:
        # ofport is -1/[] until the datapath has opened the device; wait for it.
        deadline = time.monotonic() + timeout
        while True:
            out = vsctl("get", "interface", ifname, "ofport").strip()
            if out.lstrip("-").isdigit() and int(out) > 0:
                return int(out)
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: port {ifname} got no OpenFlow port number ({out})")
            time.sleep(0.05)

    def ports(self) -> list[str]:
        return vsctl("list-ports", self.name).split()

    def add_flows(self, flows: Iterable[str], *, bundle: bool = True) -> int:
        """Install flows in bulk from a file (one ``ovs-ofctl add-flows`` call, atomic with
        ``--bundle``); returns how many were installed."""
        return self._flows_from_file("add-flows", flows, bundle)

    def replace_flows(self, flows: Iterable[str]) -> int:
        """Make the table equal to ``flows`` (``ovs-ofctl replace-flows``: only differences)."""
        return self._flows_from_file("replace-flows", flows, False)

    def del_flows(self, match: str | None = None, *, strict: bool = False) -> None:
        args = ["del-flows"] + (["--strict"] if strict else []) + [self.name]
        if match:
            args.append(match)
        ofctl(*args)

    def _flows_from_file(self, verb: str, flows: Iterable[str], bundle: bool) -> int:
        return ofctl_file(verb, self.name, flows, bundle=bundle, timeout=600)[0]

    def dump_flows(self, table: int | None = None) -> list["Flow"]:
        args = ["dump-flows", self.name]
        if table is not None:
            args.append(f"table={table}")
        out = ofctl(*args)
        return [f for f in (Flow.parse(line) for line in out.splitlines()) if f is not None]

    def flow_count(self) -> int:
        return sum(1 for line in ofctl("dump-flows", self.name).splitlines()
                   if "actions=" in line)

    def dump_groups(self) -> str:
        return ofctl("dump-groups", self.name)

    def delete(self) -> None:
        vsctl("--if-exists", "del-br", self.name)
        registry.session().release("bridge", self.name)


_FLOW_RE = re.compile(r"(?P<key>[a-z_]+)=(?P<val>[^,\s]+)")


@dataclass
class Flow:
    """One line of ``ovs-ofctl dump-flows``: table, priority, match and actions (as text)."""

    table: int
    priority: int
    match: str
    actions: str
    n_packets: int = 0
    n_bytes: int = 0

    @classmethod
    def parse(cls, line: str) -> "Flow | None":
        line = line.strip()
        if "actions=" not in line:
            return None
        head, actions = line.split("actions=", 1)
        fields = dict(m.groups() for m in _FLOW_RE.finditer(head))
        parts = [p.strip() for p in head.replace(", ", ",").split(",") if p.strip()]
        stat_keys = ("cookie", "duration", "table", "n_packets", "n_bytes", "idle_age",
                     "hard_age", "idle_timeout", "hard_timeout", "reset_counts")
        match_parts = []
        prio = 32768
        for p in " ".join(parts).split():
            for item in p.split(","):
                if not item:
                    continue
                k = item.split("=", 1)[0]
                if k in stat_keys:
                    continue
                if k == "priority":
                    prio = int(item.split("=", 1)[1])
                    continue
                match_parts.append(item)
        return cls(table=int(fields.get("table", 0)), priority=prio,
                   match=",".join(match_parts), actions=actions.strip(),
                   n_packets=int(fields.get("n_packets", 0)), n_bytes=int(fields.get("n_bytes", 0)))


def datapath_types() -> list[str]:
    """Datapath types this Open vSwitch supports (``netdev`` is the userspace one)."""
    out = vsctl("get", "Open_vSwitch", ".", "datapath_types", timeout=5).strip()
    return json.loads(out.replace("[", '["').replace("]", '"]').replace(", ", '", "')) if out != "[]" else []


def ovs_version() -> str:
    out = run(["ovs-vswitchd", "--version"], check=False).stdout
    return out.splitlines()[0].split()[-1] if out else ""


def bridges_named(names: Sequence[str]) -> list[str]:
    """Which of the given bridge names exist."""
    existing = set(vsctl("list-br").split())
    return [n for n in names if n in existing]
