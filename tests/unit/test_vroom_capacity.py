"""vroom.capacity.dataplane_limit_pps against a simulated probe (no network)."""
from __future__ import annotations

import pytest

from routerlab.traffic import ProbeResult
from vroom.capacity import dataplane_limit_pps


def fake_probe(limit: int, noisy: set[int] | None = None, seconds: float = 2.0,
               sender_max: int | None = None):
    """Loses (rate - limit) x seconds packets above `limit`; a rate in `noisy` loses one
    packet on its first try only; a sender that cannot send over `sender_max` packets/s
    skips the slots it cannot keep (it sends fewer, all delivered)."""
    tried: list[int] = []

    def probe(rate: int) -> ProbeResult:
        tried.append(rate)
        sent = int(min(rate, sender_max or rate) * seconds)
        lost = max(0, int((rate - limit) * seconds))
        if noisy and rate in noisy and tried.count(rate) == 1:
            lost = max(lost, 1)
        return ProbeResult(sent=sent, received=sent - lost, lost=lost, reordered=0, duplicated=0,
                           max_gap_ms=1.0, gaps=[], rate_pps=rate, duration_s=seconds,
                           latency_p50_ms=0.3, latency_p99_ms=2.0, latency_max_ms=5.0)
    probe.tried = tried  # type: ignore[attr-defined]
    return probe


def test_highest_rate_without_loss_and_the_table() -> None:
    p = fake_probe(22_000)
    lim = dataplane_limit_pps(None, "hA", "hB", probe=p, confirm=0, settle_s=0)
    assert lim.limit_pps == 20_000 and lim.first_failure_pps == 25_000
    assert p.tried == [2_000, 5_000, 10_000, 15_000, 20_000, 25_000]  # stops at the failure
    rows = lim.table()
    assert [r["rate_pps"] for r in rows] == p.tried and rows[-1]["ok"] is False
    assert rows[0]["delivered_pps"] == 2_000 and rows[0]["latency_p99_ms"] == 2.0
    assert "20,000 packets/s with no loss" in lim.summary()
    assert lim.to_json()["limit_pps"] == 20_000


def test_a_sender_that_falls_behind_is_not_the_data_planes_rate() -> None:
    """The probe's own limit (it sent 60,000/s when asked for 80,000, losing nothing) must
    not be reported as the data plane carrying 80,000."""
    p = fake_probe(200_000, sender_max=60_000)
    lim = dataplane_limit_pps(None, "hA", "hB", rates=[40_000, 60_000, 80_000], probe=p,
                              confirm=0, settle_s=0)
    assert lim.limit_pps == 60_000 and lim.steps[-1].lost == 0 and not lim.steps[-1].ok


def test_one_noisy_step_is_retried() -> None:
    p = fake_probe(12_000, noisy={5_000})
    lim = dataplane_limit_pps(None, "hA", "hB", rates=[2_000, 5_000, 10_000, 15_000], probe=p,
                              confirm=1, settle_s=0)
    assert lim.limit_pps == 10_000
    assert p.tried == [2_000, 5_000, 5_000, 10_000, 15_000, 15_000]


def test_nothing_passes_and_tolerance() -> None:
    assert dataplane_limit_pps(None, "a", "b", rates=[2_000], probe=fake_probe(100), confirm=0,
                               settle_s=0).limit_pps == 0
    lim = dataplane_limit_pps(None, "a", "b", rates=[2_000, 4_000], probe=fake_probe(3_990),
                              confirm=0, settle_s=0, loss_tolerance=0.01)
    assert lim.limit_pps == 4_000


@pytest.mark.parametrize("kw", [{"rates": []}, {"rates": [5_000, 2_000]}, {"rates": [0, 1]},
                                {"seconds": 0}, {"loss_tolerance": 1.0}, {"confirm": -1}])
def test_bad_arguments(kw) -> None:
    with pytest.raises(ValueError):
        dataplane_limit_pps(None, "a", "b", probe=fake_probe(1), settle_s=0, **kw)


def test_latency_bound() -> None:
    lim = dataplane_limit_pps(None, "a", "b", rates=[2_000], probe=fake_probe(10_000), confirm=0,
                              settle_s=0, max_p99_ms=1.0)
    assert lim.limit_pps == 0 and lim.steps[0].lost == 0 and not lim.steps[0].ok


# ------------------------------------------------------------------ ovs-vswitchd stalls

class FakeWatch:
    """Stands for `OvsStallWatch`: during the k-th probe ovs-vswitchd stalled `stalls[k]`
    ms and received `msgs[k]` OpenFlow messages."""

    def __init__(self, stalls: list[float], msgs: list[int] | None = None):
        self.stalls = list(stalls)
        self.msgs = list(msgs or [])
        self.calls = 0
        self.quiet_waits = 0

    def worst_ms(self, t0: float, t1: float) -> float:
        self.calls += 1
        return self.stalls[self.calls - 1] if self.calls <= len(self.stalls) else 1.0

    def openflow_msgs(self, t0: float, t1: float) -> int | None:
        return self.msgs[self.calls - 1] if self.calls <= len(self.msgs) else 0

    def wait_quiet(self, quiet_s: float, threshold_ms: float, timeout_s: float,
                   busy_msgs: int | None = None) -> bool:
        self.quiet_waits += 1
        return True


def stalled_probe(limit: int, stalled_tries: set[int]):
    """Like fake_probe, but the tries numbered in `stalled_tries` (0-based over the whole
    run) lose everything: ovs-vswitchd stood still (another run's bulk OpenFlow work)."""
    inner = fake_probe(limit)

    def probe(rate: int) -> ProbeResult:
        r = inner(rate)
        if len(inner.tried) - 1 in stalled_tries:
            return ProbeResult(sent=r.sent, received=0, lost=r.sent, reordered=0, duplicated=0,
                               max_gap_ms=2000.0, gaps=[], rate_pps=rate, duration_s=2.0)
        return r
    probe.tried = inner.tried  # type: ignore[attr-defined]
    return probe


class FakeLab:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def wait_converged(self, timeout: float) -> float:
        self.waits.append(timeout)
        return 0.0


def test_a_step_lost_to_an_ovs_stall_is_retried_when_the_switch_is_quiet() -> None:
    """The symptom: a concurrent vroom-cloning run deleted 250,000 flows (ovs-vswitchd stood
    still ~3.8 s for every bridge, OSPF adjacencies dropped) during the 10,000 packets/s
    step of an FRR lab; its limit read 5,000."""
    p = stalled_probe(22_000, stalled_tries={2})
    w = FakeWatch([2.0, 3.0, 3_800.0])
    lab = FakeLab()
    lim = dataplane_limit_pps(lab, "hA", "hB", rates=[2_000, 5_000, 10_000, 15_000, 20_000],
                              probe=p, confirm=0, settle_s=0, stall_watch=w)
    assert lim.limit_pps == 20_000 and lim.first_failure_pps is None
    assert p.tried == [2_000, 5_000, 10_000, 10_000, 15_000, 20_000]  # not against `confirm`
    assert w.quiet_waits == 1 and len(lab.waits) == 1  # quiet switch, then re-converged lab
    (d,) = lim.disturbed
    assert (d.rate_pps, d.ovs_stall_ms, d.ok) == (10_000, 3_800.0, False)
    assert lim.steps[0].ovs_stall_ms == 2.0 and not lim.steps[0].disturbed
    assert "disturbed: ovs-vswitchd stalled 3,800 ms" in lim.summary()
    assert lim.to_json()["disturbed_steps"] == 1


def test_stalls_retry_at_most_max_disturbed_times_then_the_step_counts() -> None:
    p = stalled_probe(22_000, stalled_tries={1, 2, 3})
    w = FakeWatch([1.0, 500.0, 500.0, 500.0])
    lim = dataplane_limit_pps(None, "a", "b", rates=[2_000, 5_000, 10_000], probe=p, confirm=0,
                              settle_s=0, stall_watch=w, max_disturbed=2)
    assert lim.limit_pps == 2_000 and lim.first_failure_pps == 5_000
    assert p.tried == [2_000, 5_000, 5_000, 5_000]
    assert len(lim.disturbed) == 3


def test_a_loss_without_a_stall_is_the_data_planes_limit() -> None:
    p = fake_probe(12_000)
    w = FakeWatch([1.0, 1.0, 1.0, 40.0])  # a short pause is not a stall
    lim = dataplane_limit_pps(None, "a", "b", rates=[2_000, 5_000, 10_000, 15_000], probe=p,
                              confirm=0, settle_s=0, stall_watch=w)
    assert lim.limit_pps == 10_000 and p.tried == [2_000, 5_000, 10_000, 15_000]
    assert not lim.disturbed and w.quiet_waits == 0
    assert lim.steps[-1].ovs_stall_ms == 40.0


def test_a_step_lost_while_the_switch_did_bulk_openflow_work_is_retried() -> None:
    """Bulk work in bounded bundles (250,000 flows removed 2,500 at a time) stalls nothing
    for long but slows forwarding on every bridge: the OpenFlow count tells it."""
    p = stalled_probe(22_000, stalled_tries={1})
    w = FakeWatch([2.0, 60.0, 3.0], msgs=[0, 180_000, 12])
    lim = dataplane_limit_pps(None, "a", "b", rates=[2_000, 5_000], probe=p, confirm=0,
                              settle_s=0, stall_watch=w)
    assert lim.limit_pps == 5_000 and p.tried == [2_000, 5_000, 5_000]
    (d,) = lim.disturbed
    assert d.ovs_openflow_msgs == 180_000 and "180,000 OpenFlow messages" in lim.summary()
    # not counted: the same step is the data plane's failure
    p = stalled_probe(22_000, stalled_tries={1})
    lim = dataplane_limit_pps(None, "a", "b", rates=[2_000, 5_000], probe=p, confirm=0,
                              settle_s=0, stall_watch=FakeWatch([2.0, 60.0], msgs=[0, 180_000]),
                              busy_msgs=None)
    assert lim.limit_pps == 2_000 and not lim.disturbed


def test_a_step_carried_through_a_stall_is_not_disturbed() -> None:
    lim = dataplane_limit_pps(None, "a", "b", rates=[2_000], probe=fake_probe(5_000), confirm=0,
                              settle_s=0, stall_watch=FakeWatch([900.0]))
    assert lim.limit_pps == 2_000 and not lim.disturbed and lim.steps[0].ovs_stall_ms == 900.0


class FakeOvs:
    """ovs-vswitchd's unixctl socket: answers JSON-RPC requests for the OpenFlow coverage
    counter (`openflow`, or an error without `counter`) and `version`, each after `delay`
    seconds (set it to make the switch stall)."""

    def __init__(self, path: str, counter: bool = True):
        import socket
        import threading

        self.delay = 0.0
        self.openflow = 1000
        self.counter = counter
        self.methods: list[str] = []
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(1)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        import json
        import time

        conn, _ = self.srv.accept()
        dec, buf = json.JSONDecoder(), ""
        with conn:
            while True:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                buf += chunk.decode()
                while buf:
                    try:
                        req, end = dec.raw_decode(buf)
                    except ValueError:
                        break
                    buf = buf[end:]
                    time.sleep(self.delay)
                    self.methods.append(req["method"])
                    if req["method"] == "version":
                        result, error = "ovs-vswitchd 3.1.0\n", None
                    elif self.counter and req["params"] == ["ofproto_recv_openflow"]:
                        result, error = f"{self.openflow}\n", None
                    else:
                        result, error = None, f"\"{req['method']}\" is not a valid command"
                    reply = json.dumps({"id": req["id"], "result": result, "error": error})
                    # split the reply over two writes: the watch must reassemble it
                    conn.sendall(reply[:7].encode())
                    conn.sendall(reply[7:].encode())

    def close(self) -> None:
        self.srv.close()


def test_ovs_stall_watch_times_ovs_vswitchd_answers(tmp_path) -> None:
    import time

    from vroom.capacity import OvsStallWatch

    (tmp_path / "ovs-vswitchd.pid").write_text("4242\n")
    ctl = tmp_path / "ovs-vswitchd.4242.ctl"
    ovs = FakeOvs(str(ctl))
    assert OvsStallWatch.control_socket(tmp_path) == ctl
    try:
        with OvsStallWatch(interval_s=0.01, ctl=ctl) as w:
            t0 = time.time()
            time.sleep(0.3)
            assert len(w.samples) > 3 and w.worst_ms(t0, time.time()) < 150
            ovs.delay = 0.4  # the switch stops answering (a 250,000-flow delete elsewhere)
            t1 = time.time()
            time.sleep(0.2)
            assert w.worst_ms(t1, time.time()) >= 150  # an unanswered request counts already
            time.sleep(0.3)
            ovs.delay = 0.0
            assert w.worst_ms(t1, time.time()) >= 350
            assert w.worst_ms(t0 - 10, t0 - 5) == 0.0  # before it started: nothing
            assert w.wait_quiet(quiet_s=0.2, threshold_ms=150, timeout_s=5)
            assert w.worst_ms(time.time() - 0.2, time.time()) < 150
            # someone's bulk OpenFlow work: the counter climbs
            t2 = time.time()
            time.sleep(0.1)
            ovs.openflow += 50_000
            time.sleep(0.1)
            assert w.openflow_msgs(t2, time.time()) == 50_000
            assert w.openflow_msgs(t0, t1) == 0
            assert not w.wait_quiet(quiet_s=0.3, threshold_ms=150, timeout_s=0.1,
                                    busy_msgs=1_000)
            assert w.wait_quiet(quiet_s=0.3, threshold_ms=150, timeout_s=5, busy_msgs=1_000)
        assert not w.wait_quiet(0.1, 150, 0.2)  # stopped: never quiet
        assert set(ovs.methods) == {"coverage/read-counter"}
    finally:
        ovs.close()
    with pytest.raises(OSError):
        OvsStallWatch.control_socket(tmp_path / "nowhere")


def test_ovs_stall_watch_without_the_counter_times_version_requests(tmp_path) -> None:
    import time

    from vroom.capacity import OvsStallWatch

    ctl = tmp_path / "ovs.ctl"
    ovs = FakeOvs(str(ctl), counter=False)
    try:
        with OvsStallWatch(interval_s=0.01, ctl=ctl) as w:
            t0 = time.time()
            time.sleep(0.2)
            assert w.openflow_msgs(t0, time.time()) is None
            assert w.worst_ms(t0, time.time()) < 150
        assert ovs.methods[0] == "coverage/read-counter" and ovs.methods[-1] == "version"
    finally:
        ovs.close()
