"""routerlab.ovs without a switch: the one ``ovs-ofctl dump-flows`` parser."""
from __future__ import annotations

from routerlab.ovs import Flow, parse_flows


def test_parse_flows_with_and_without_stats() -> None:
    got = parse_flows([
        "OFPST_FLOW reply (OF1.3) (xid=0x2):",
        " cookie=0x0, duration=0.007s, table=1, n_packets=3, n_bytes=180, priority=1048,ip,"
        "reg0=0x1,nw_dst=10.0.0.0/24 actions=group:5",
        " priority=100,in_port=1 actions=drop",
        " table=2, idle_timeout=5, reset_counts priority=7,arp actions=NORMAL"])
    assert got == [Flow(1, 1048, "ip,reg0=0x1,nw_dst=10.0.0.0/24", "group:5", 3, 180),
                   Flow(0, 100, "in_port=1", "drop"),
                   Flow(2, 7, "arp", "NORMAL")]


def test_parse_defaults_and_non_flow_lines() -> None:
    assert Flow.parse("OFPST_FLOW reply (OF1.3) (xid=0x2):") is None
    assert Flow.parse("") is None
    f = Flow.parse("actions=output:2")
    assert f == Flow(0, 32768, "", "output:2")
    # actions keep their own commas and parentheses
    f = Flow.parse(" table=3, priority=5,reg2=0x1 actions=mod_dl_src:02:00:00:00:00:01,resubmit(,2)")
    assert f is not None and f.actions == "mod_dl_src:02:00:00:00:00:01,resubmit(,2)"
    assert f.match == "reg2=0x1" and f.table == 3
