"""`routerlab doctor`: is every component routerlab needs present and working here?

Each check probes the real thing (creates a scratch namespace or bridge, registered and
removed) rather than trusting package names, and says what to do when something is missing."""
from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass

from routerlab import netns as nsmod
from routerlab import ovs

log = logging.getLogger(__name__)


@dataclass
class Check:
    component: str
    status: str  # ok | warn | missing
    detail: str
    action: str = ""
    required: bool = True


def _scratch_name(tag: str) -> str:
    return f"rldoc-{tag}-{uuid.uuid4().hex[:4]}"


def check_ovs() -> list[Check]:
    out: list[Check] = []
    if shutil.which("ovs-vsctl") is None:
        return [Check("Open vSwitch", "missing", "ovs-vsctl not found",
                      "run scripts/setup.sh (installs openvswitch-switch)")]
    if not ovs.ovs_running():
        return [Check("Open vSwitch", "missing", "ovsdb-server/ovs-vswitchd not running",
                      "run scripts/setup.sh (starts it with ovs-ctl)")]
    types = ovs.datapath_types()
    kernel_dp = os.path.exists("/sys/module/openvswitch")
    out.append(Check("Open vSwitch", "ok", f"{ovs.ovs_version()}; datapaths: {', '.join(types)}"))
    if "netdev" not in types:
        out.append(Check("OVS userspace datapath", "missing", "netdev datapath not offered",
                         "install an Open vSwitch build with the userspace datapath"))
        return out
    name = _scratch_name("br")[:15]
    try:
        br = ovs.Bridge.create(name)
        try:
            out.append(Check("OVS userspace datapath", "ok",
                             f"bridge with datapath_type=netdev, OpenFlow 1.3 works"
                             f"{'' if kernel_dp else ' (no kernel module: userspace is the only datapath)'}"))
            out.append(check_mpls(br.name))
        finally:
            br.delete()
    except Exception as e:  # report, never crash the doctor
        out.append(Check("OVS userspace datapath", "missing", str(e), "see /var/log/openvswitch/"))
    return out


# Push, swap and pop as B4's tunnels use them. Each flow sends the packet back out of the
# port it came in on: OVS rejects `drop` beside other actions, and the scratch bridge has no
# port but LOCAL (output:LOCAL from LOCAL would be dropped).
MPLS_PROBE_FLOWS = (
    "priority=1,ip,actions=push_mpls:0x8847,set_field:16->mpls_label,output:in_port",
    "priority=1,mpls,mpls_label=16,actions=set_field:17->mpls_label,output:in_port",
    "priority=1,mpls,mpls_label=17,actions=pop_mpls:0x0800,output:in_port",
)
# (packet traced from LOCAL, what the datapath must do with it)
MPLS_PROBE_TRACES = (
    ("ip", "push_mpls("),
    ("mpls,mpls_label=16,mpls_bos=1", "set(mpls(label=17"),
    ("mpls,mpls_label=17,mpls_bos=1", "pop_mpls("),
)


def check_mpls(bridge: str) -> Check:
    """B4's MPLS tunnels: install push/swap/pop flows on the scratch bridge `bridge`, then
    trace a packet through each (``ofproto/trace``) to see the datapath really does them."""
    action = "B4 tunnels need Open vSwitch with MPLS push/pop/swap actions"
    try:
        ovs.ofctl_file("add-flows", bridge, MPLS_PROBE_FLOWS, bundle=True, timeout=30)
    except (nsmod.CommandError, subprocess.TimeoutExpired) as e:
        return Check("MPLS in OVS", "missing", f"MPLS flows rejected: {e}", action)
    for packet, expect in MPLS_PROBE_TRACES:
        try:
            trace = nsmod.run(["ovs-appctl", "ofproto/trace", bridge, f"in_port=LOCAL,{packet}"],
                              timeout=30).stdout
        except (nsmod.CommandError, subprocess.TimeoutExpired) as e:
            return Check("MPLS in OVS", "missing", f"ofproto/trace failed: {e}", action)
        dp = next((ln for ln in trace.splitlines() if ln.startswith("Datapath actions:")), "")
        if expect not in dp:
            return Check("MPLS in OVS", "missing",
                         f"flows accepted but a {packet} packet got {dp or 'no datapath actions'!r}",
                         action)
    return Check("MPLS in OVS", "ok", "push/swap/pop flows accepted and traced through the "
                 "userspace datapath (B4 tunnels)")


def check_netem() -> Check:
    """Delay/loss emulation needs the netem qdisc; probe it on lo of a scratch namespace."""
    name = _scratch_name("tc")
    ns = nsmod.Netns.create(name)
    try:
        r = ns.run(["tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"], check=False)
        if r.returncode == 0:
            return Check("netem qdisc", "ok", "link delay/loss emulation available", required=False)
        said = (r.stderr or r.stdout).strip()
        return Check("netem qdisc", "missing",
                     f"kernel has no netem ({said.splitlines()[0] if said else 'unknown qdisc'}): "
                     "topology link delays are ignored (links run at full speed with no added delay)",
                     "use a kernel with CONFIG_NET_SCH_NETEM (most distro kernels) for delay emulation",
                     required=False)
    finally:
        ns.delete()


def check_tools() -> list[Check]:
    out = []
    for tool, pkg, required in (("mnexec", "mininet", True), ("ethtool", "ethtool", True),
                                ("iperf3", "iperf3", True), ("nsenter", "util-linux", True),
                                ("tcpdump", "tcpdump", False), ("iptables", "iptables", False),
                                ("nft", "nftables", False)):
        path = shutil.which(tool)
        out.append(Check(tool, "ok" if path else "missing", path or "not found",
                         "" if path else f"run scripts/setup.sh (installs {pkg})", required))
    try:
        import mininet.net

        out.append(Check("Mininet (Python)", "ok", f"{mininet.net.VERSION} on Python {sys.version.split()[0]}"))
    except ImportError as e:
        out.append(Check("Mininet (Python)", "missing", str(e), "run scripts/setup.sh"))
    return out


def _older(version: str, than: str) -> bool:
    """Whether dotted `version` ("3.10.0", "8.4.4-1") is older than `than` ("3.24")."""
    def nums(v: str) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", v.split("-")[0])[:3])
    return nums(version) < nums(than)


def check_daemons() -> list[Check]:
    out = []
    try:
        from routerlab.daemons import DAEMONS
    except ImportError as e:
        return [Check("routing daemons", "missing", f"drivers unavailable: {e}", "")]
    for cls in DAEMONS:
        try:
            v = cls.version()
            name = f"{cls.implementation} ({cls.description})"
            if v and cls.recommended and _older(v, cls.recommended[0]):
                out.append(Check(name, "warn", f"{v} (older than {cls.recommended[0]})",
                                 cls.recommended[1]))
                continue
            out.append(Check(name, "ok" if v else "missing", v or "not found",
                             "" if v else "run scripts/setup.sh"))
        except Exception as e:
            out.append(Check(f"{cls.implementation}", "missing", str(e), "run scripts/setup.sh"))
    return out


def check_criu(refresh: bool = False) -> list[Check]:
    try:
        from routerlab import criu
    except ImportError as e:
        return [Check("CRIU", "missing", f"module unavailable: {e}", "", required=False)]
    return [Check(f"CRIU: {f.name}", "ok" if f.ok else "missing", f.detail, "" if f.ok else f.hint,
                  required=False)
            for f in criu.features(refresh=refresh).values()]


def check_frr_migration() -> Check:
    """Can VROOM live-migrate an FRR virtual router with the CRIU found here?"""
    name = "FRR live migration"
    try:
        from routerlab import criu
        from routerlab.daemons import FrrDaemon
    except ImportError as e:
        return Check(name, "missing", f"module unavailable: {e}", "", required=False)
    if not FrrDaemon.version():
        return Check(name, "missing", "FRR is not installed", "run scripts/setup.sh", required=False)
    feats = criu.features()
    for need in ("check", "socket_dump"):
        f = feats.get(need)
        if f is None or not f.ok:
            return Check(name, "missing", f"CRIU lacks {need}: {f.detail if f else 'not detected'}",
                         f.hint if f else criu.HINT_GET_CRIU, required=False)
    gt32 = feats.get("netlink_groups_gt32")
    if gt32 is not None and gt32.ok:
        return Check(name, "ok", "CRIU dumps zebra's netlink groups > 32 itself", required=False)
    ok, detail = criu.netlink_drop_selftest()
    if ok:
        return Check(name, "ok", "stock CRIU + netlink groups > 32 dropped/re-added around the dump",
                     required=False)
    return Check(name, "missing", f"CRIU lacks netlink_groups_gt32 and {detail}",
                 "a kernel with pidfd_getfd (Linux >= 5.6) or a CRIU that dumps netlink groups > 32",
                 required=False)


def check_zookeeper() -> Check:
    path = "/usr/share/zookeeper/bin/zkServer.sh"
    java = shutil.which("java")
    if os.path.exists(path) and java:
        return Check("ZooKeeper", "ok", f"{path} (private instances on 127.0.0.1)", required=False)
    return Check("ZooKeeper", "missing", "zookeeper or java not found",
                 "run scripts/setup.sh (installs zookeeperd); B4 controller election needs it",
                 required=False)


def run_checks(refresh: bool = False) -> list[Check]:
    checks: list[Check] = []
    checks += check_ovs()
    checks += check_tools()
    checks.append(check_netem())
    checks += check_daemons()
    checks += check_criu(refresh)
    checks.append(check_frr_migration())
    checks.append(check_zookeeper())
    return checks
