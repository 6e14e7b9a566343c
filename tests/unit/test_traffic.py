"""Probe accounting (loss, reordering, duplicates, gaps) and iperf3 parsing: pure functions."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from routerlab import probe_agent
from routerlab.traffic import (Gap, Iperf, LatencyStats, ProbeResult, ReceiverLog, SenderReport, analyze,
                               arrival_series, default_gap_threshold_ms, latency_in_windows,
                               latency_series, latency_stats, parse_iperf3, percentile)

MS = 1_000_000  # ns
T0 = 1_700_000_000 * 1_000_000_000  # a realistic CLOCK_REALTIME origin


def stream(rate: float, sent: int, *, delay_ns: int = 50_000, drop: set[int] = frozenset(),
           clock_offset_ns: int = 0) -> tuple[SenderReport, list[tuple[int, int, int]]]:
    """A synthetic run: packet i sent at T0 + i/rate, arriving delay later unless dropped."""
    period = 1e9 / rate
    sends = [T0 + int(i * period) for i in range(sent)]
    recs = [(i, sends[i], sends[i] + delay_ns + clock_offset_ns) for i in range(sent) if i not in drop]
    rep = SenderReport(sent=sent, rate_pps=rate, first_send_ns=sends[0], last_send_ns=sends[-1])
    return rep, recs


def test_healthy_stream() -> None:
    rep, recs = stream(1000, 3000)
    r = analyze(rep, ReceiverLog.from_records(recs))
    assert (r.sent, r.received, r.lost, r.reordered, r.duplicated) == (3000, 3000, 0, 0, 0)
    assert r.gaps == []
    assert r.max_gap_ms == pytest.approx(1.0, abs=0.01)
    assert r.duration_s == pytest.approx(2.999)
    assert r.min_delay_ms == pytest.approx(0.05)
    assert r.loss_ratio == 0


def test_outage_of_500_ms_is_one_gap() -> None:
    # link down from 1.000 s to 1.500 s: packets 1000..1499 lost
    rep, recs = stream(1000, 3000, drop=set(range(1000, 1500)))
    r = analyze(rep, ReceiverLog.from_records(recs))
    assert r.lost == 500 and r.received == 2500
    assert len(r.gaps) == 1
    g = r.gaps[0]
    # last packet before: seq 999 at 0.999 s; first after: seq 1500 at 1.500 s
    assert g.duration_ms == pytest.approx(501.0, abs=0.01)
    assert g.start_s == pytest.approx(0.999, abs=1e-6)
    assert g.end_s == pytest.approx(1.5, abs=1e-6)
    assert g.lost == 500
    assert r.max_gap_ms == g.duration_ms


def test_clock_offset_between_sender_and_receiver_cancels() -> None:
    rep, recs = stream(1000, 2000, drop=set(range(500, 800)), clock_offset_ns=-7_000 * MS)
    r = analyze(rep, ReceiverLog.from_records(recs))
    assert [(round(g.start_s, 3), round(g.duration_ms), g.lost) for g in r.gaps] == [(0.499, 301, 300)]


def test_loss_at_start_and_end_are_gaps() -> None:
    rep, recs = stream(1000, 2000, drop=set(range(0, 100)) | set(range(1900, 2000)))
    r = analyze(rep, ReceiverLog.from_records(recs))
    assert r.lost == 200
    assert [(g.start_s, round(g.duration_ms), g.lost) for g in r.gaps] == [
        (0.0, 100, 100), (pytest.approx(1.899), 100, 100)]


def test_small_losses_below_threshold_are_not_gaps() -> None:
    rep, recs = stream(1000, 1000, drop={10, 20, 21, 500})
    r = analyze(rep, ReceiverLog.from_records(recs))
    assert r.lost == 4 and r.gaps == []
    assert r.max_gap_ms == pytest.approx(3.0, abs=0.01)


def test_everything_lost() -> None:
    rep, _ = stream(1000, 1000)
    r = analyze(rep, ReceiverLog())
    assert (r.received, r.lost) == (0, 1000)
    assert len(r.gaps) == 1 and r.gaps[0].lost == 1000
    assert r.gaps[0].duration_ms == pytest.approx(999.0)
    assert r.min_delay_ms is None


def test_nothing_sent() -> None:
    r = analyze(SenderReport(sent=0, rate_pps=1000), ReceiverLog())
    assert (r.sent, r.lost, r.max_gap_ms, r.gaps) == (0, 0, 0.0, [])


def test_duplicates_and_reordering() -> None:
    ms = MS
    # arrival order: 0 1 3 2 2 4 1 5  -> 2 arrives after 3 (reordered), second 2 and 1 are dups
    recs = [(s, T0 + s * ms, T0 + k * ms + 100) for k, s in enumerate([0, 1, 3, 2, 2, 4, 1, 5])]
    rep = SenderReport(sent=6, rate_pps=1000, first_send_ns=T0, last_send_ns=T0 + 5 * ms)
    r = analyze(rep, ReceiverLog.from_records(recs))
    assert (r.received, r.lost, r.reordered, r.duplicated) == (6, 0, 1, 2)


def test_late_packet_counts_as_reordered_not_lost() -> None:
    rep, recs = stream(1000, 100)
    late = recs.pop(10)
    recs.append((late[0], late[1], late[2] + 200 * MS))  # arrives after everything else
    r = analyze(rep, ReceiverLog.from_records(recs))
    assert (r.lost, r.reordered, r.duplicated) == (0, 1, 0)


def test_arrivals_out_of_timestamp_order_are_sorted() -> None:
    rep, recs = stream(1000, 500, drop=set(range(100, 200)))
    recs.reverse()
    r = analyze(rep, ReceiverLog.from_records(recs))
    assert len(r.gaps) == 1 and r.gaps[0].lost == 100 and r.reordered == 0


def test_foreign_sequence_numbers_are_ignored() -> None:
    rep, recs = stream(1000, 100)
    recs.append((5000, T0, T0 + 10 * MS))
    r = analyze(rep, ReceiverLog.from_records(recs))
    assert (r.received, r.lost, r.duplicated) == (100, 0, 0)


def test_delay_spike_is_gap_with_no_loss() -> None:
    rep, recs = stream(1000, 1000)
    # packets 300..399 held back and delivered together at 0.45 s, after 400..449
    recs = [(s, t, a if not 300 <= s < 400 else T0 + 450 * MS + s) for s, t, a in recs]
    recs.sort(key=lambda x: x[2])
    r = analyze(rep, ReceiverLog.from_records(recs))
    assert (r.lost, r.reordered) == (0, 100) and len(r.gaps) == 1
    # from 299 (0.299 s) to 400 (0.400 s); the held packets were not lost
    assert r.gaps[0].lost == 0 and r.gaps[0].duration_ms == pytest.approx(101.0, abs=0.01)


def test_sender_stall_is_not_a_gap() -> None:
    # The sender is descheduled for 30 ms after packet 499, then sends the 30 missed packets
    # back to back (catch-up): the receiver hears nothing for 31 ms, but the network lost
    # nothing and was never silent while the sender was sending.
    rep, recs = stream(1000, 1000)
    resume = T0 + 529 * MS
    recs = [(s, max(t, resume) if s >= 500 else t, 0) for s, t, _ in recs]
    recs = [(s, t, t + 50_000 + k * 1000 * (500 <= s < 530)) for k, (s, t, _) in enumerate(recs)]
    r = analyze(rep, ReceiverLog.from_records(recs))
    assert r.lost == 0 and r.gaps == []
    assert r.max_gap_ms < 2
    # the raw silence is visible with the correction off (threshold 0 shows every interval)
    assert any(g.sender_idle_ms > 25 for g in analyze(rep, ReceiverLog.from_records(recs),
                                                      gap_threshold_ms=0).gaps)


def test_sender_skipping_slots_is_not_a_gap() -> None:
    # A 200 ms stall beyond the catch-up limit: the sender skips the missed slots, so the
    # sequence numbers continue but the send times jump.
    period = MS
    sends = [T0 + i * period for i in range(300)] + [T0 + (i + 200) * period for i in range(300, 1000)]
    rep = SenderReport(sent=1000, rate_pps=1000, first_send_ns=sends[0], last_send_ns=sends[-1],
                       skipped_slots=200)
    r = analyze(rep, ReceiverLog.from_records([(i, t, t + 50_000) for i, t in enumerate(sends)]))
    assert r.lost == 0 and r.gaps == [] and r.max_gap_ms == pytest.approx(1.0, abs=0.01)


def test_outage_with_sender_stall_at_its_end() -> None:
    # Link down 1.0-1.5 s; the sender stalls from 1.49 s to 1.51 s and then catches up, so
    # the first packet after the outage (1500) leaves 10 ms late: the silence at the
    # receiver is 511 ms, of which 10 ms was the sender's own; the gap is 501 ms.
    rep, recs = stream(1000, 3000, drop=set(range(1000, 1500)))
    resume = T0 + 1510 * MS
    recs = [(s, max(t, resume) if 1490 <= s < 1510 else t, 0) for s, t, _ in recs]
    recs = [(s, t, t + 50_000 + s) for s, t, _ in recs]
    r = analyze(rep, ReceiverLog.from_records(recs))
    assert [(round(g.duration_ms), g.lost, round(g.sender_idle_ms)) for g in r.gaps] == [(501, 500, 10)]


def test_outage_ended_by_queued_packets_counts_losses_by_time() -> None:
    # Link down at 1.0 s and ARP unresolved until 2.04 s: the kernel queues 1000..1276 and
    # releases them at 2.04 s, drops 1277..2039; from 2040 on all is normal. The silence
    # ends with an *old* packet (1000), yet the gap holds every loss of the outage.
    rep, recs = stream(1000, 3000, drop=set(range(1277, 2040)))
    release = T0 + 2040 * MS
    recs = [(s, t, release + (s - 1000) * 1000 if 1000 <= s < 1277 else a) for s, t, a in recs]
    recs.sort(key=lambda x: x[2])
    r = analyze(rep, ReceiverLog.from_records(recs))
    assert r.lost == 763
    assert [(round(g.start_s, 3), round(g.duration_ms), g.lost) for g in r.gaps] == [(0.999, 1041, 763)]


def test_gap_threshold() -> None:
    assert default_gap_threshold_ms(1000) == 20.0
    assert default_gap_threshold_ms(100) == 50.0
    rep, recs = stream(1000, 1000, drop=set(range(100, 110)))
    assert analyze(rep, ReceiverLog.from_records(recs)).gaps == []
    r = analyze(rep, ReceiverLog.from_records(recs), gap_threshold_ms=5)
    assert [(g.lost, round(g.duration_ms)) for g in r.gaps] == [(10, 11)]


def test_result_json_roundtrip() -> None:
    rep, recs = stream(1000, 2000, drop=set(range(500, 1000)))
    r = analyze(rep, ReceiverLog.from_records(recs))
    d = json.loads(json.dumps(r.to_json()))
    assert d["loss_ratio"] == 0.25 and d["gaps"][0]["lost"] == 500
    assert ProbeResult.from_json(d) == r
    assert "500 lost" in r.summary()


def test_receiver_log_json_roundtrip() -> None:
    _, recs = stream(1000, 50)
    lg = ReceiverLog.from_records(recs)
    back = ReceiverLog.from_json(json.loads(json.dumps(lg.to_json())))
    assert list(zip(back.seq, back.send_ns, back.arrival_ns)) == recs


def test_arrival_series() -> None:
    rep, recs = stream(1000, 1000, drop=set(range(200, 400)))
    series = arrival_series(rep, ReceiverLog.from_records(recs), bin_s=0.1)
    assert [c for _, c in series] == [100, 100, 0, 0, 100, 100, 100, 100, 100, 100]
    assert series[2][0] == pytest.approx(0.2)


def test_packet_header_roundtrip() -> None:
    pkt = probe_agent.HEADER.pack(probe_agent.MAGIC, 7, 42, T0)
    assert probe_agent.HEADER.unpack(pkt) == (b"RLP1", 7, 42, T0)
    assert probe_agent.HEADER.size == 24


def test_gap_end() -> None:
    assert Gap(start_s=1.0, duration_ms=500.0, lost=500).end_s == 1.5


def test_agent_refuses_a_hostname() -> None:
    # The sender takes literal addresses only, so it can never resolve and reach elsewhere.
    p = subprocess.run([sys.executable, "-m", "routerlab.probe_agent", "send", "--dst",
                        "example.com", "--port", "9", "--run-id", "1"],
                       capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert p.returncode == 2 and "does not appear to be an IPv4 or IPv6 address" in p.stderr


# --------------------------------------------------------------------------- iperf3

IPERF_TCP = {
    "start": {"test_start": {"protocol": "TCP", "num_streams": 1, "duration": 1}},
    "intervals": [{"streams": [], "sum": {"start": 0, "end": 1.000127, "seconds": 1.0001,
                                          "bytes": 2621440, "bits_per_second": 20968857.8,
                                          "retransmits": 0, "omitted": False, "sender": True}}],
    "end": {"streams": [],
            "sum_sent": {"start": 0, "end": 1.000127, "seconds": 1.000127, "bytes": 2621440,
                         "bits_per_second": 20968856.955166694, "retransmits": 3, "sender": True},
            "sum_received": {"start": 0, "end": 1.000186, "seconds": 1.000186, "bytes": 2621440,
                             "bits_per_second": 20967620.022675782, "sender": True},
            "cpu_utilization_percent": {}},
}

IPERF_UDP = {
    "start": {"test_start": {"protocol": "UDP", "num_streams": 1, "duration": 1}},
    "intervals": [{"streams": [], "sum": {"start": 0, "end": 1.000154, "seconds": 1.00015,
                                          "bytes": 638464, "bits_per_second": 5106925.4,
                                          "packets": 29, "omitted": False, "sender": True}}],
    "end": {"streams": [],
            "sum": {"start": 0, "end": 1.000231, "seconds": 1.000231, "bytes": 638464,
                    "bits_per_second": 5106925.533467846, "jitter_ms": 0.0117, "lost_packets": 0,
                    "packets": 29, "lost_percent": 0, "sender": True},
            "sum_sent": {"start": 0, "end": 1.000154, "seconds": 1.000154, "bytes": 638464,
                         "bits_per_second": 5106925.533467846, "jitter_ms": 0, "lost_packets": 0,
                         "packets": 29, "lost_percent": 0, "sender": True},
            "sum_received": {"start": 0, "end": 1.000231, "seconds": 1.000231, "bytes": 616448,
                             "bits_per_second": 4930000.0, "jitter_ms": 0.0117, "lost_packets": 1,
                             "packets": 29, "lost_percent": 3.448, "sender": False}},
}


def test_parse_iperf3_tcp() -> None:
    r = parse_iperf3(json.dumps(IPERF_TCP))
    assert r.protocol == "tcp" and r.error is None
    assert r.throughput_mbps == pytest.approx(20.9676, abs=1e-3)
    assert r.sent_mbps == pytest.approx(20.9689, abs=1e-3)
    assert r.retransmits == 3 and r.lost_packets is None
    assert r.intervals == [(0.0, 1.000127, pytest.approx(20.9689, abs=1e-3))]
    assert json.loads(json.dumps(r.to_json()))["retransmits"] == 3


def test_parse_iperf3_udp() -> None:
    r = parse_iperf3(IPERF_UDP)
    assert r.protocol == "udp" and r.retransmits is None
    assert r.throughput_mbps == pytest.approx(4.93)
    assert (r.lost_packets, r.packets, r.loss_percent) == (1, 29, pytest.approx(3.448))
    assert r.jitter_ms == pytest.approx(0.0117)


def test_parse_iperf3_udp_old_format_has_only_sum() -> None:
    d = json.loads(json.dumps(IPERF_UDP))
    del d["end"]["sum_sent"], d["end"]["sum_received"]
    del d["start"]["test_start"]
    r = parse_iperf3(d)
    assert r.protocol == "udp" and r.lost_packets == 0
    assert r.throughput_mbps == pytest.approx(5.1069, abs=1e-3)


def test_parse_iperf3_error() -> None:
    r = parse_iperf3({"start": {"connected": []}, "intervals": [], "end": {},
                      "error": "unable to connect to server: Connection refused"})
    assert r.error and "refused" in r.error and r.throughput_mbps == 0


def test_iperf_client_command() -> None:
    class H:
        name = "h"

        def popen(self, args, **kw):  # pragma: no cover - never called
            raise AssertionError

    it = Iperf(H(), H(), "10.0.0.2", duration_s=3, rate_mbps=12.5, udp=True, port=5301,
               client_ip="10.0.0.1")
    cmd = it.client_command()
    assert cmd[:6] == ["iperf3", "-c", "10.0.0.2", "-p", "5301", "-J"]
    assert ["-t", "3"] == cmd[6:8] and "-u" in cmd and cmd[cmd.index("-b") + 1] == "12.5M"
    assert cmd[cmd.index("-B") + 1] == "10.0.0.1"
    with pytest.raises(ValueError):
        Iperf(H(), H(), "224.0.0.5")


# --------------------------------------------------------------------------- agents on loopback

class _FakeSession:
    def __init__(self) -> None:
        self.added: list[int] = []
        self.released: list[int] = []

    def add_process(self, pid: int, name: str = "") -> None:
        self.added.append(pid)

    def release_process(self, pid: int) -> None:
        self.released.append(pid)


class _LocalHost:
    """A 'host' that runs commands in the current namespace (no root needed)."""

    name = "local"

    def popen(self, args, **kwargs):
        return subprocess.Popen(args, **kwargs)


def test_probe_agents_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole agent protocol (ready lines, stop, drain, JSON reports) over 127.0.0.1."""
    from routerlab import registry, traffic

    sess = _FakeSession()
    monkeypatch.setattr(registry, "session", lambda: sess)
    h = _LocalHost()
    r = traffic.measure(h, h, "127.0.0.1", duration_s=0.5, rate_pps=1000, size=100)
    assert (r.sent, r.lost, r.duplicated, r.reordered, r.gaps) == (500, 0, 0, 0, [])
    # 500 packets span 499 slots of 1 ms; the first and the last packet may each leave late
    # by up to the sender's worst lateness (the scheduler decides that, not the agent)
    assert r.size == 100
    assert abs(r.duration_s - 0.499) <= r.sender_max_late_ms / 1000 + 0.001
    # both agents were registered (not a Netns host) and released after they ended
    assert len(sess.added) == 2 and sorted(sess.released) == sorted(sess.added)
    # explicit start/stop
    with traffic.Probe(h, h, "127.0.0.1", rate_pps=500) as p:
        assert p.running and p.port > 0
    assert p.result is not None and p.result.sent > 0 and p.result.lost == 0
    with pytest.raises(traffic.ProbeError):
        p.start()


# --------------------------------------------------------------------------- latency

def test_latency_percentiles_in_the_result() -> None:
    # 100 packets: latency 1..100 ms (packet i takes i+1 ms)
    rep = SenderReport(sent=100, rate_pps=1000, first_send_ns=T0, last_send_ns=T0 + 99 * MS)
    recs = [(i, T0 + i * MS, T0 + i * MS + (i + 1) * MS) for i in range(100)]
    r = analyze(rep, ReceiverLog.from_records(recs))
    assert (r.latency_p50_ms, r.latency_p99_ms, r.latency_max_ms) == (50.0, 99.0, 100.0)
    assert "latency p50 50.00 / p99 99.00 / max 100.00 ms" in r.summary()
    assert ProbeResult.from_json(json.loads(json.dumps(r.to_json()))).latency_p99_ms == 99.0


def test_latency_of_an_empty_run_is_none() -> None:
    rep = SenderReport(sent=10, rate_pps=1000, first_send_ns=T0, last_send_ns=T0 + 9 * MS)
    r = analyze(rep, ReceiverLog())
    assert r.latency_p50_ms is None and "no latency" in r.summary()
    assert latency_stats([]) == LatencyStats()


def test_percentile_nearest_rank() -> None:
    v = [float(x) for x in range(1, 11)]
    assert percentile(v, 50) == 5.0 and percentile(v, 99) == 10.0 and percentile(v, 10) == 1.0
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        percentile(v, 0)
    with pytest.raises(ValueError):
        percentile([], 50)


def test_latency_series_keeps_first_arrivals_in_send_order() -> None:
    rep = SenderReport(sent=3, rate_pps=1000, first_send_ns=T0, last_send_ns=T0 + 2 * MS)
    recs = [(1, T0 + MS, T0 + 3 * MS),  # seq 1 overtaken by...
            (0, T0, T0 + 5 * MS),
            (1, T0 + MS, T0 + 9 * MS),  # a duplicate: ignored
            (7, T0, T0 + MS)]  # not a sequence number of this run
    ser = latency_series(rep, ReceiverLog.from_records(recs))
    assert [(s, round(ms, 3)) for _, s, ms in ser] == [(0, 5.0), (1, 2.0)]
    assert ser[0][0] == pytest.approx(T0 / 1e9)


def test_latency_in_windows_by_send_time() -> None:
    # 1,000 pps for 3 s, 0.2 ms each, except packets sent in [1.0, 1.1) s held until 1.13 s
    rep, recs = stream(1000, 3000, delay_ns=200_000)
    held = [(s, t, max(a, T0 + 1130 * MS)) if 1000 <= s < 1100 else (s, t, a) for s, t, a in recs]
    lg = ReceiverLog.from_records(held)
    t0 = T0 / 1e9
    w = latency_in_windows(rep, lg, [("steady", t0, t0 + 0.9), ("link", t0 + 1.0, t0 + 1.0999),
                                     ("after", t0 + 1.2, t0 + 3.0)])
    assert w["steady"].count == 901 and w["steady"].max_ms == pytest.approx(0.2)
    assert w["link"].count == 100 and w["link"].max_ms == pytest.approx(130.0)
    assert w["link"].p50_ms == pytest.approx(80.0, abs=1.01)
    assert w["after"].p99_ms == pytest.approx(0.2)
    assert w["all"].count == 3000 and w["all"].max_ms == pytest.approx(130.0)
    assert "all" not in latency_in_windows(rep, lg, [], overall=None)
    with pytest.raises(ValueError):
        latency_in_windows(rep, lg, [("bad", t0 + 2, t0 + 1)])


def test_probe_arguments_are_checked() -> None:
    from routerlab.errors import UserError
    from routerlab.traffic import check_probe_args

    assert check_probe_args(5, 10000) == (5.0, 10000.0)
    for s, r in ((0, 1000), (-1, 1000), (float("nan"), 1000), (3, 0), (3, -5), (3, 2e6), ("x", 1)):
        with pytest.raises(UserError) as ei:
            check_probe_args(s, r)
        assert "\n" not in str(ei.value)


def test_lab_probe_command_arguments() -> None:
    from routerlab.errors import UserError
    from routerlab.lab import parse_probe_args

    assert parse_probe_args("hA hB") == ("hA", "hB", 3.0, 1000)
    assert parse_probe_args("hA hB 5") == ("hA", "hB", 5.0, 1000)
    assert parse_probe_args("hA hB 5 10000") == ("hA", "hB", 5.0, 10000)
    assert parse_probe_args("hA hB 0.5 20,000") == ("hA", "hB", 0.5, 20000)
    for bad, msg in (("hA", "usage: probe A B [SECONDS [RATE]]"),
                     ("hA hB 1 2 3", "usage"), ("hA hB x", "SECONDS must be a number"),
                     ("hA hB 0", "SECONDS must be in"), ("hA hB 3 1.5", "RATE must be a whole"),
                     ("hA hB 3 0", "RATE must be in"), ("hA hB 3 2000000", "RATE must be in"),
                     ("hA 'hB", "usage")):
        with pytest.raises(UserError) as ei:
            parse_probe_args(bad)
        assert msg in str(ei.value) and "\n" not in str(ei.value), bad
