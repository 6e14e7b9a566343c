"""B4 throughput windows: in-window loss accounting and the validity check of b4-wan.

Regression for a b4-wan run that reported a +68.8% TE gain (allocation: +14.8%): during the
shortest-path window ovs-vswitchd's main thread stalled for 1-1.5 s twice (another user's
bridge installing 100,000 flows), and every flow -- congested or not -- lost about a third of
its packets. Traffic sent at a feasible allocation must arrive; a window where it does not
measured the machine, not routing.
"""
from __future__ import annotations

from b4.measure import ThroughputResult, check_delivery
from b4.traffic import FlowGroupTraffic


def test_window_counts_offered_packets_from_sequence_numbers():
    a = {"time": 10.0, "flows": {1: (100, 142800, 100), 2: (50, 71400, 50)}}
    b = {"time": 14.0, "flows": {1: (500, 714000, 500), 2: (110, 157080, 150)}}
    w = FlowGroupTraffic.window(a, b)
    assert w.seconds == 4.0
    assert w.packets == {1: 400, 2: 60}
    assert w.offered == {1: 400, 2: 100}
    assert w.lost(1) == 0 and w.lost(2) == 40


def _result(nominal, offered, received):
    return ThroughputResult(4.0, {}, {}, {}, {}, {}, nominal_pkts=nominal, offered_pkts=offered,
                            received_pkts=received)


def test_clean_window_is_valid():
    r = _result({"FG1/bulk": 400.0, "FG3/bulk": 945.0}, {"FG1/bulk": 400, "FG3/bulk": 944},
                {"FG1/bulk": 399, "FG3/bulk": 944})
    chk = check_delivery(r)
    assert chk.ok, chk.reason
    assert chk.lost_pkts == 1


def test_datapath_stall_makes_the_window_invalid():
    # The failing run's shortest-path window: uncongested flows at 65-77% of what was offered.
    r = _result({"FG8/bulk": 135.0, "FG3/bulk": 945.0, "FG2/bulk": 656.0},
                {"FG8/bulk": 135, "FG3/bulk": 945, "FG2/bulk": 656},
                {"FG8/bulk": 88, "FG3/bulk": 660, "FG2/bulk": 505})
    chk = check_delivery(r)
    assert not chk.ok
    assert "datapath lost" in chk.reason and "FG8/bulk" in chk.reason
    assert chk.delivered_ratio < 0.75


def test_starved_senders_make_the_window_invalid():
    r = _result({"FG1/bulk": 400.0}, {"FG1/bulk": 300}, {"FG1/bulk": 300})
    chk = check_delivery(r)
    assert not chk.ok and "CPU-starved" in chk.reason


def test_no_traffic_is_not_a_valid_window():
    assert not check_delivery(_result({"FG1/bulk": 400.0}, {"FG1/bulk": 0}, {"FG1/bulk": 0})).ok
