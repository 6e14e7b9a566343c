"""Control-plane move helpers that need no root: parsing, command building, process handles
and `Daemon.adopt` (how a driver takes over its restored processes)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from routerlab import registry
from routerlab.daemons import Daemon, DaemonError, RouterSpec
from routerlab.daemons.base import RestoredProcess
from vroom.cpmove import parse_maddress
from vroom.cpmove.fibcopy import _route_spec
from vroom.cpmove.sockets import _mreqn


def test_parse_maddress_skips_all_hosts() -> None:
    text = ("1:\tlo\n\tinet  224.0.0.1\n3:\teth0\n\tlink  01:00:5e:00:00:01\n"
            "\tinet  224.0.0.6\n\tinet  224.0.0.5\n\tinet  224.0.0.1\n"
            "5:\teth1@if9\n\tinet  224.0.0.5\n\tinet  224.0.0.1\n")
    assert parse_maddress(text) == {"eth0": {"224.0.0.5", "224.0.0.6"}, "eth1": {"224.0.0.5"}}


@pytest.mark.parametrize("line,spec", [
    ("10.0.0.0/24 dev eth0 proto kernel scope link src 10.0.0.1 linkdown ", None),
    ("10.5.0.0/16 via 10.0.0.2 dev eth0 proto bird metric 32 linkdown ",
     "10.5.0.0/16 via 10.0.0.2 dev eth0 proto bird metric 32"),
    ("10.6.0.0/16 proto bird metric 32 \\\tnexthop via 10.0.0.2 dev eth0 weight 1 "
     "\\\tnexthop via 10.0.1.2 dev eth1 weight 2 dead linkdown ",
     "10.6.0.0/16 proto bird metric 32 nexthop via 10.0.0.2 dev eth0 weight 1 "
     "nexthop via 10.0.1.2 dev eth1 weight 2"),
    ("10.10.0.0/16 nhid 5 via 10.0.0.2 dev eth0 proto ospf ",
     "10.10.0.0/16 nhid 5 proto ospf"),  # FRR's nexthop objects are copied: keep the id
    ("10.6.0.0/16 nhid 20 proto ospf metric 20 \\\tnexthop via 10.0.0.2 dev eth0 weight 1 "
     "\\\tnexthop via 10.0.1.2 dev eth1 weight 1 ", "10.6.0.0/16 nhid 20 proto ospf metric 20"),
    ("blackhole 10.7.0.0/16 proto bird ", "blackhole 10.7.0.0/16 proto bird"),
])
def test_route_spec_for_copying(line: str, spec: str | None) -> None:
    assert _route_spec(line) == spec


def test_mreqn_layout() -> None:
    b = _mreqn("224.0.0.5", 102)
    assert len(b) == 12 and b[:4] == bytes([224, 0, 0, 5]) and b[4:8] == b"\0" * 4
    assert int.from_bytes(b[8:], sys.byteorder) == 102


def test_restored_process_handle_reaps_its_child() -> None:
    p = subprocess.Popen(["sleep", "30"])
    h = RestoredProcess(p.pid)
    assert h.poll() is None
    h.terminate()
    assert h.wait(5) != 0 and h.returncode is not None
    assert h.poll() == h.returncode
    with pytest.raises(ChildProcessError):
        os.waitpid(p.pid, os.WNOHANG)  # reaped by the handle


def test_predump_args_track_memory_and_keep_the_namespace_external(tmp_path) -> None:
    from vroom.cpmove import predump_args

    args = predump_args(4242, tmp_path / "pre", 4026532000)
    assert args[:3] == ["pre-dump", "--tree", "4242"]
    assert "--track-mem" in args and "--tcp-established" in args
    assert args[args.index("--external") + 1] == "net[4026532000]:rlnet"


@pytest.mark.parametrize("min_bytes,pages,lazy", [
    (None, [1 << 30], False),  # post-copy off
    (0, [], True),  # on
    (256 << 20, [200 << 20, 100 << 20], True),  # the dump's pages files together
    (256 << 20, [200 << 20, 4096], False),
])
def test_post_copy_restore_for_big_dumps_only(tmp_path, min_bytes, pages, lazy) -> None:
    from vroom.cpmove.move import ControlPlaneMove

    for k, n in enumerate(pages):
        with open(tmp_path / f"pages-{k + 1}.img", "wb") as f:
            f.truncate(n)  # sparse: only the size counts
    (tmp_path / "core-1.img").write_bytes(b"x" * 4096)
    m = ControlPlaneMove(SimpleNamespace(), SimpleNamespace(), SimpleNamespace(), tmp_path, {},
                         SimpleNamespace(), postcopy_min_bytes=min_bytes)  # type: ignore[arg-type]
    assert m._postcopy(tmp_path) is lazy


def test_freeze_waits_for_a_netlink_dump_to_end(monkeypatch) -> None:
    """BIRD's kernel scan (a netlink dump) running: the move waits, before the freeze, until
    it ends and its last part is read; a dump that never ends is waited for only up to the
    limit; data queued on a socket that was not dumping (an event) is the retries' business."""
    from routerlab import criu
    from vroom.cpmove.move import ControlPlaneMove

    polls: list[int] = []

    def queues(pid: int) -> dict[int, tuple[bool, int]]:
        polls.append(pid)
        n = len(polls)  # dumping for 5 polls, then 3 with its last part unread, then idle
        return {7: (n <= 5, 4096 if n <= 8 else 0), 8: (False, 512)}

    monkeypatch.setattr(criu, "netlink_queues", queues)
    daemon = SimpleNamespace(pids={"bird": 2}, spec=SimpleNamespace(name="r1"))
    m = ControlPlaneMove(daemon, SimpleNamespace(), SimpleNamespace(), Path("/nonexistent"), {},  # type: ignore[arg-type]
                         SimpleNamespace())  # type: ignore[arg-type]
    waited = m._await_no_netlink_dump(30.0, poll_s=0.01)
    assert len(polls) == 9 and waited < 30.0
    monkeypatch.setattr(criu, "netlink_queues", lambda pid: {7: (True, 100)})
    assert m._await_no_netlink_dump(0.2, poll_s=0.01) >= 0.2


# --------------------------------------------------------------------------- Daemon.adopt

class _FakeDaemon(Daemon):
    """A driver with nothing to launch: only what `adopt` and `stop` need."""

    implementation = "fake"

    def render(self) -> dict[str, str]:
        return {}

    def _check_config(self, directory: Path) -> None:
        pass

    def _launch(self) -> None:
        pass

    def _ready(self) -> bool:
        return True

    def bgp_sessions(self) -> list:
        return []

    def routes(self) -> list:
        return []

    def cli(self, command: str) -> str:
        return ""

    @classmethod
    def version(cls) -> str | None:
        return None


@pytest.fixture
def session(tmp_path, monkeypatch) -> registry.Session:
    """This test's own registry session (a file under tmp_path, not /run/routerlab)."""
    s = registry.Session(tmp_path / "session.jsonl")
    monkeypatch.setattr(registry, "_current", s)
    return s


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen(["sleep", "30"])


def test_adopt_takes_over_processes_and_records_them(session: registry.Session) -> None:
    d = _FakeDaemon(RouterSpec(name="r1", router_id="10.255.0.1"))
    a, b = _sleeper(), _sleeper()
    try:
        d.adopt(SimpleNamespace(name="ns-b"), {"a": a.pid, "b": b.pid})  # type: ignore[arg-type]  # a stand-in Netns
        assert d.ns.name == "ns-b" and d.pids == {"a": a.pid, "b": b.pid} and d.is_running()
        live = {r["pid"]: r for r in registry.live_resources(session.path)}
        assert live[a.pid]["name"] == "fake:ns-b:r1:a"
        assert live[a.pid]["start"] == registry.proc_start_time(a.pid)  # pid reuse guard
        # moved back: the same programs, now named in their new namespace
        d.adopt(SimpleNamespace(name="ns-a"), {"a": a.pid, "b": b.pid})  # type: ignore[arg-type]  # a stand-in Netns
        assert registry.live_resources(session.path)[0]["name"].startswith("fake:ns-a:")
        d.stop()
        assert not d.is_running() and a.poll() is not None and b.poll() is not None
        assert registry.live_resources(session.path) == []
    finally:
        for p in (a, b):
            p.kill()


def test_adopt_refuses_a_missing_program_and_changes_nothing(session: registry.Session) -> None:
    d = _FakeDaemon(RouterSpec(name="r1", router_id="10.255.0.1"))
    a, b = _sleeper(), _sleeper()
    try:
        d.adopt(SimpleNamespace(name="ns-a"), {"a": a.pid, "b": b.pid})  # type: ignore[arg-type]  # a stand-in Netns
        with pytest.raises(DaemonError, match="no restored process for b"):
            d.adopt(SimpleNamespace(name="ns-b"), {"a": a.pid})  # type: ignore[arg-type]  # a stand-in Netns
        assert d.ns.name == "ns-a" and d.pids == {"a": a.pid, "b": b.pid}
        d.stop()
    finally:
        for p in (a, b):
            p.kill()


def test_nexthop_objects_copied_singles_before_groups() -> None:
    from vroom.cpmove.fibcopy import _nexthop_spec, nexthop_commands
    assert _nexthop_spec("id 12 via 10.9.1.2 dev eth0 scope link proto zebra") == (
        12, "id 12 via 10.9.1.2 dev eth0 proto zebra")
    want = {20: "id 20 group 12/13 proto zebra", 12: "id 12 via 1.1.1.1 dev eth0 proto zebra",
            3: "id 3 dev lo proto zebra"}
    add, drop = nexthop_commands(want, {3: "id 3 dev lo proto zebra", 9: "id 9 dev eth0"})
    assert add == ["nexthop replace id 12 via 1.1.1.1 dev eth0 proto zebra",
                   "nexthop replace id 20 group 12/13 proto zebra"]
    assert drop == ["nexthop del id 9"]



def test_neighbours_probed_by_zebra_count_as_resolved(monkeypatch) -> None:
    """FRR's zebra probes OSPF neighbours for ospfd, which tags the entries "proto zebra"
    (printed after the NUD state): they are resolved, copied to the target and forwarded
    to by the data plane (read as unresolved, their groups punted, and the punted packets,
    routed at the target and sent back through the tunnel they came from, were lost)."""
    from vroom import fib
    from vroom.cpmove import fibcopy
    text = ("10.95.1.2 dev eth0 lladdr 4e:e3:3a:3b:f8:e2 REACHABLE proto zebra\n"
            "10.95.3.2 dev eth2 lladdr 92:aa:ab:33:89:86 STALE\n"
            "10.95.4.2 dev eth3 INCOMPLETE proto zebra\n")
    ns = fib.parse_neighbours(text)
    assert [(n.ip, n.state, n.resolved) for n in ns] == [
        ("10.95.1.2", "REACHABLE", True), ("10.95.3.2", "STALE", True),
        ("10.95.4.2", "INCOMPLETE", False)]
    sent: list[list[str]] = []
    monkeypatch.setattr(fibcopy.fib, "read_neighbours", lambda _ns: ns)
    monkeypatch.setattr(fibcopy, "_batch", lambda _ns, cmds: sent.append(cmds) or len(cmds))
    assert fibcopy.copy_neighbours("a", "b") == 2
    assert sent == [["neigh replace 10.95.1.2 lladdr 4e:e3:3a:3b:f8:e2 dev eth0 nud stale",
                     "neigh replace 10.95.3.2 lladdr 92:aa:ab:33:89:86 dev eth2 nud stale"]]

def test_proc_netlink_table_by_inode() -> None:
    from routerlab.criu import parse_proc_netlink
    text = ("sk               Eth Pid        Groups   Rmem     Wmem     Dump  Locks    Drops    Inode\n"
            "0000000031f55412 0   3632986853 00000000 0        0        0     2        0        5012    \n"
            "0000000098251775 16  4220102342 00000000 0        0        0     2        0        5007    \n")
    assert parse_proc_netlink(text) == {5012: 0, 5007: 16}


def test_proc_netlink_dump_running_by_inode() -> None:
    from routerlab.criu import proc_netlink_column
    # BIRD's kernel scan in progress on 7001: bytes queued and a dump running
    text = ("sk               Eth Pid        Groups   Rmem     Wmem     Dump  Locks    Drops    Inode\n"
            "0000000031f55412 0   3632986853 00000000 212992   0        1     2        0        7001\n"
            "0000000098251775 0   4220102342 00000111 0        0        0     2        0        7002\n")
    assert proc_netlink_column(text, "Dump") == {7001: 1, 7002: 0}
    assert proc_netlink_column(text, "Rmem") == {7001: 212992, 7002: 0}
    assert proc_netlink_column(text, "NoSuchColumn") == {}


def test_netlink_fixes_readd_groups_and_reset_flags() -> None:
    from vroom.cpmove.netlink import NetlinkSocket, fixes, high_groups
    saved = NetlinkSocket(10, 0, frozenset({1, 5, 32, 34}), {"EXT_ACK": 1, "CAP_ACK": 0})
    now = NetlinkSocket(10, 0, frozenset({1, 5, 32, 7}), {"EXT_ACK": 0, "CAP_ACK": 0})
    assert fixes(saved, now) == ([34], {"EXT_ACK": 1})
    assert high_groups({"zebra": {10: saved}, "ospfd": {}}) == {"zebra": {10: [34]}}


def test_only_transient_dump_refusals_are_retried() -> None:
    from routerlab.criu import CriuError
    from vroom.cpmove.move import retryable_dump_error
    busy = CriuError("dump", 1, None, ["(00.05) Error (criu/sk-netlink.c:101): The socket has data to read"])
    other = CriuError("dump", 1, None, ["(00.05) Error (criu/sk-inet.c:3): Can't dump inet socket"])
    assert retryable_dump_error(busy) and not retryable_dump_error(other)


def test_frr_tree_script_starts_zebra_first_then_waits() -> None:
    from routerlab.daemons.frr import tree_script
    script = tree_script([("zebra", ["/usr/lib/frr/zebra", "-f", "/r/zebra.conf"], Path("/r/zebra.out")),
                          ("ospfd", ["/usr/lib/frr/ospfd", "-f", "/r/o d.conf"], Path("/r/ospfd.out"))],
                         Path("/r/zserv.api"))
    lines = script.splitlines()
    assert lines[0] == "/usr/lib/frr/zebra -f /r/zebra.conf >/r/zebra.out 2>&1 &"
    assert "[ ! -S /r/zserv.api ]" in lines[2] and "exit 1" in lines[2]
    assert lines[3] == "/usr/lib/frr/ospfd -f '/r/o d.conf' >/r/ospfd.out 2>&1 &"
    assert lines[-1] == "wait"


class _TreeFake(Daemon):
    implementation = "fake"

    def render(self):
        return {}

    def _check_config(self, directory):
        pass

    def _launch(self):
        pass

    def _ready(self):
        return True

    def bgp_sessions(self):
        return []

    def routes(self):
        return []

    def cli(self, command):
        return ""

    @classmethod
    def version(cls):
        return "1"


def test_process_tree_children_found_adopted_and_stopped(session: registry.Session) -> None:
    from routerlab.daemons.base import children_by_comm
    d = _TreeFake(RouterSpec(name="r1", router_id="10.0.0.1"))
    d.ns = SimpleNamespace(name="ns-a")  # type: ignore[assignment]  # a stand-in Netns
    root = subprocess.Popen(["sh", "-c", "sleep 30 & sleep 31 & wait"], start_new_session=True)
    try:
        from routerlab.daemons.base import DaemonProcess
        d._procs.append(DaemonProcess("tree", root, "fake:ns-a:r1:tree", root=True))
        assert d._adopt_children(["sleep"], 5) == []
        kids = children_by_comm(root.pid)
        assert list(kids) == ["sleep"]
        assert d.dump_roots() == {"tree": root.pid} and d.is_running()
        d.adopt(SimpleNamespace(name="ns-b"), {"tree": root.pid})  # type: ignore[arg-type]  # a stand-in Netns
        assert d.pids["sleep"] == kids["sleep"] and d.tree_root is not None
    finally:
        d.stop(timeout=5)
        root.kill()
        root.wait(5)
    assert root.returncode is not None and not d.pids


def test_route_watch_reads_the_changed_destinations() -> None:
    """The freeze copies only the prefixes a RouteWatch saw change: RTM_NEWROUTE /
    RTM_DELROUTE messages of table main, as the kernel sends them."""
    import socket
    import struct

    from vroom.cpmove.fibcopy import changed_prefixes

    def msg(mtype: int, dst: str | None, plen: int, table: int = 254) -> bytes:
        attrs = b""
        if dst is not None:
            attrs += struct.pack("=HH", 8, 1) + socket.inet_aton(dst)
        attrs += struct.pack("=HHI", 8, 15, table)
        body = struct.pack("=BBBBBBBBI", socket.AF_INET, plen, 0, 0, min(table, 255), 3, 0, 1,
                           0) + attrs
        return struct.pack("=IHHII", 16 + len(body), mtype, 0, 0, 0) + body

    data = (msg(24, "11.2.0.0", 16) + msg(25, "9.9.9.9", 32) + msg(24, None, 0)
            + msg(24, "12.0.0.0", 8, table=255) + msg(16, "1.1.1.0", 24))
    assert changed_prefixes(data) == {"11.2.0.0/16", "9.9.9.9/32", "0.0.0.0/0"}


# --------------------------------------------------------------------------- post-copy servers

def _post_copy_move() -> object:
    from vroom.cpmove.move import ControlPlaneMove
    daemon = SimpleNamespace(pids={}, spec=SimpleNamespace(name="r1"))
    return ControlPlaneMove(daemon, SimpleNamespace(), SimpleNamespace(), Path("/img"), {},  # type: ignore[arg-type]
                            SimpleNamespace())  # type: ignore[arg-type]


def _server(script: str) -> subprocess.Popen:
    return subprocess.Popen(["sh", "-c", script])


def test_post_copy_servers_that_finish_are_released(session: registry.Session) -> None:
    m = _post_copy_move()
    for p in (_server("exit 0"), _server("sleep 0.2")):
        m._lazy_started(p)
    assert {r["pid"] for r in registry.live_resources(session.path)} == {p.pid for p in m._lazy}
    m._await_pages(timeout=10)
    assert not m._lazy and not m.pages_lost and registry.live_resources(session.path) == []


def test_a_failed_post_copy_server_loses_pages(session: registry.Session) -> None:
    from vroom.cpmove import CpMoveError
    m = _post_copy_move()
    hung = _server("exec sleep 30")
    m._lazy_started(_server("exit 3"))
    m._lazy_started(hung)
    with pytest.raises(CpMoveError, match="exited 3.*did not finish"):
        m._await_pages(timeout=0.3)
    # both stopped (the hung one killed) and released; the daemon may not be moved back as is
    assert m.pages_lost and not m._lazy and hung.poll() is not None
    assert registry.live_resources(session.path) == []
    m.pages_lost = False
    m._lazy_started(_server("exit 1"))
    m._await_pages(timeout=5, check=False)  # on a path failing already: logged, not raised
    assert m.pages_lost and not m._lazy
