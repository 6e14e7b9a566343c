"""Control-plane move helpers that need no root: parsing and command building."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from vroom.cpmove import RestoredProcess, _mreqn, _route_spec, parse_maddress


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
