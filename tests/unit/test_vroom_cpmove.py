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
     "10.10.0.0/16 via 10.0.0.2 dev eth0 proto ospf"),
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
