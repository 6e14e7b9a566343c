"""B4 TE database diff, op ordering, the op state machine and delivery over a lossy channel."""
from __future__ import annotations

import random

import pytest

from b4.ted import (ADD, DELETE, FLOW_GROUP, MODIFY, TUNNEL, TUNNEL_GROUP, FlowGroupSpec, TedMeta,
                    build_desired, diff, ted_from_json, ted_to_json, weights_in_quanta)
from b4.teops import (APPLY, ERROR, IGNORE, OK, REJECTED, REPLY, STALE_SEQ, STALE_SESSION, Ack, Op,
                      OpFormatError, OpReceiver, OpScheduler, SiteTed, TedStore, ack_for, restore_scheduler)

# The worked example's quantized tunnel groups (B4 paper Fig. 7, quantum 0.5; reconstructed inputs).
EXAMPLE_TG = {
    "FG1": [(("A", "B"), 0.5), (("A", "C", "B"), 0.5), (("A", "D", "C", "B"), 0.0)],
    "FG2": [(("A", "C"), 0.0), (("A", "D", "C"), 1.0)],
}
EXAMPLE_FG = {
    "FG1": FlowGroupSpec("FG1", "A", "B", "10.101.0.0/16", "10.102.0.0/16"),
    "FG2": FlowGroupSpec("FG2", "A", "C", "10.101.0.0/16", "10.103.0.0/16"),
}


def example_desired(meta: TedMeta | None = None, tg=EXAMPLE_TG):
    return build_desired(tg, EXAMPLE_FG, 0.5, meta or TedMeta())


# ----------------------------------------------------------------------------- TED + diff

def test_build_desired_places_entries_on_the_path():
    meta = TedMeta()
    d = example_desired(meta)
    lab_ab, lab_acb, lab_adc = meta.labels["A-B"], meta.labels["A-C-B"], meta.labels["A-D-C"]
    assert "A-D-C-B" not in meta.labels and "A-C" not in meta.labels  # zero weight: not installed
    assert d["A"][(TUNNEL, f"T{lab_acb}")] == {"label": lab_acb, "role": "encap", "next_hop": "C"}
    assert d["C"][(TUNNEL, f"T{lab_acb}")] == {"label": lab_acb, "role": "transit", "next_hop": "B"}
    assert d["B"][(TUNNEL, f"T{lab_acb}")] == {"label": lab_acb, "role": "decap", "next_hop": None}
    assert d["D"][(TUNNEL, f"T{lab_adc}")]["role"] == "transit"
    assert d["C"][(TUNNEL, f"T{lab_adc}")]["role"] == "decap"
    tg1 = d["A"][(TUNNEL_GROUP, f"G{meta.group_ids['FG1']}")]
    assert tg1["buckets"] == sorted([{"tunnel": f"T{lab_ab}", "weight": 1},
                                     {"tunnel": f"T{lab_acb}", "weight": 1}], key=lambda b: b["tunnel"])
    fg2 = d["A"][(FLOW_GROUP, f"F{meta.fg_ids['FG2']}")]
    assert fg2["dst"] == "10.103.0.0/16" and fg2["tunnel_group"] == f"G{meta.group_ids['FG2']}"
    # Only the sites on a path get entries, and flow groups/tunnel groups only at the encap site.
    assert {k for s in ("B", "C", "D") for k, _ in d[s]} == {TUNNEL}


def test_ids_are_stable_across_runs():
    meta = TedMeta()
    a = example_desired(meta)
    b = example_desired(meta)
    assert a == b
    assert TedMeta.from_json(meta.to_json()).labels == meta.labels


def test_weights_in_quanta():
    assert weights_in_quanta([0.5, 0.5, 0.0], 0.5) == [1, 1, 0]
    assert weights_in_quanta([0.25, 0.75], 0.25) == [1, 3]
    assert weights_in_quanta([0.333, 0.667], 0) == [333, 667]
    assert weights_in_quanta([0.01, 0.02], 0.5) == [0, 1]  # never an empty group


def test_diff_orders_adds_tunnel_first_and_deletes_flow_group_first():
    desired = example_desired()
    ops = diff({}, desired)
    assert all(o.action == ADD for o in ops)
    kinds = [o.kind for o in ops]
    last_tunnel = max(i for i, k in enumerate(kinds) if k == TUNNEL)
    first_tg = min(i for i, k in enumerate(kinds) if k == TUNNEL_GROUP)
    last_tg = max(i for i, k in enumerate(kinds) if k == TUNNEL_GROUP)
    first_fg = min(i for i, k in enumerate(kinds) if k == FLOW_GROUP)
    assert last_tunnel < first_tg and last_tg < first_fg  # across all sites, not just per site
    back = diff(desired, {})
    kinds = [o.kind for o in back]
    assert all(o.action == DELETE for o in back)
    assert kinds.index(TUNNEL) > max(i for i, k in enumerate(kinds) if k == TUNNEL_GROUP) > \
        max(i for i, k in enumerate(kinds) if k == FLOW_GROUP)
    assert diff(desired, desired) == []


def test_diff_modify_and_mixed_phases():
    meta = TedMeta()
    before = example_desired(meta)
    # FG1 moves everything to A-C-B: its group is modified, tunnel A-B removed from A and B.
    after = example_desired(meta, {"FG1": [(("A", "B"), 0.0), (("A", "C", "B"), 1.0)],
                                   "FG2": EXAMPLE_TG["FG2"]})
    ops = diff(before, after)
    acts = [(o.site, o.action, o.kind) for o in ops]
    assert ("A", MODIFY, TUNNEL_GROUP) in acts
    assert ("A", DELETE, TUNNEL) in acts and ("B", DELETE, TUNNEL) in acts
    assert acts.index(("A", MODIFY, TUNNEL_GROUP)) < acts.index(("A", DELETE, TUNNEL))
    assert [o.phase for o in ops] == sorted(o.phase for o in ops)


def test_ted_json_round_trip_and_validation():
    d = example_desired()
    for ted in d.values():
        assert ted_from_json(ted_to_json(ted)) == ted
    with pytest.raises(ValueError):
        ted_from_json({"tunnel": {"T5": {"label": 5, "role": "encap", "next_hop": "B"}}})  # reserved label
    with pytest.raises(ValueError):
        ted_from_json({"tunnel": {"T1000": {"label": 1001, "role": "encap", "next_hop": "B"}}})


# ----------------------------------------------------------------------------- ops on the wire

def test_op_parse_rejects_malformed():
    good = Op("A", 1, 1, ADD, TUNNEL, "T1000", {"label": 1000, "role": "decap", "next_hop": None})
    assert Op.from_json(good.to_json()) == good
    for bad in ({}, [], {"type": "op"}, {**good.to_json(), "seq": "1"}, {**good.to_json(), "action": "zap"},
                {**good.to_json(), "entry": {"label": 1000}}, {**good.to_json(), "seq": 0}):
        with pytest.raises(OpFormatError):
            Op.from_json(bad)


# ----------------------------------------------------------------------------- site state machine

def _op(seq, session=10, action=ADD, label=1000, site="A"):
    return Op(site, session, seq, action, TUNNEL, f"T{label}",
              None if action == DELETE else {"label": label, "role": "decap", "next_hop": None})


def test_receiver_rejects_lower_seq_and_stale_session():
    r = OpReceiver("A")
    assert r.admit(_op(5)) == (APPLY, None)
    r.complete(_op(5), ack_for(_op(5), OK))
    verdict, ack = r.admit(_op(3))
    assert verdict == REPLY and ack.status == REJECTED and ack.reason == STALE_SEQ
    # A new session resets the sequence; the old one is stale from then on.
    assert r.admit(_op(1, session=11)) == (APPLY, None)
    verdict, ack = r.admit(_op(9, session=10))
    assert verdict == REPLY and ack.reason == STALE_SESSION


def test_receiver_duplicates_get_the_same_answer():
    r = OpReceiver("A")
    op = _op(1)
    assert r.admit(op)[0] == APPLY
    assert r.admit(op) == (IGNORE, None)  # still being applied: its ack will follow
    r.complete(op, ack_for(op, OK))
    verdict, ack = r.admit(op)
    assert verdict == REPLY and ack.status == OK and ack.duplicate


def test_site_ted_reference_checks_and_idempotence():
    t = SiteTed("A", neighbors={"B", "C"})
    tg = Op("A", 1, 1, ADD, TUNNEL_GROUP, "G1", {"group_id": 1, "buckets": [{"tunnel": "T1000", "weight": 1}]})
    assert "unknown tunnel T1000" in t.check(tg)
    tun = Op("A", 1, 2, ADD, TUNNEL, "T1000", {"label": 1000, "role": "encap", "next_hop": "B"})
    assert t.check(tun) is None
    t.apply(tun)
    t.apply(tun)  # twice: same state
    assert len(t.entries) == 1
    assert t.check(tg) is None
    t.apply(tg)
    assert "still used by G1" in t.check(Op("A", 1, 3, DELETE, TUNNEL, "T1000"))
    bad_nh = Op("A", 1, 4, ADD, TUNNEL, "T1001", {"label": 1001, "role": "transit", "next_hop": "Z"})
    assert "not a neighbour" in t.check(bad_nh)
    t.apply(Op("A", 1, 5, DELETE, TUNNEL, "T2000"))  # deleting a missing entry is a no-op
    assert len(t.entries) == 2


# ----------------------------------------------------------------------------- server scheduler

class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_scheduler_phases_acks_and_timeouts():
    clk = Clock()
    s = OpScheduler(session=7, timeout=1.0, clock=clk)
    s.set_desired(example_desired(s.meta))
    first = s.poll()
    assert first and all(o.kind == TUNNEL for o in first)
    assert s.poll() == []  # nothing new until the tunnels are acked
    for o in first[:-1]:
        assert s.on_ack(ack_for(o, OK)) == "clean"
    assert s.poll() == []  # one tunnel still unacked: the phase is not done
    clk.t = 1.5
    resent = s.poll()
    assert len(resent) == 1 and resent[0].id == first[-1].id and resent[0].seq > first[-1].seq
    assert s.on_ack(ack_for(first[-1], OK)) == "stale"  # the superseded copy's ack
    assert s.on_ack(ack_for(resent[0], OK)) == "clean"
    groups = s.poll()
    assert groups and all(o.kind == TUNNEL_GROUP for o in groups)
    for o in groups:
        s.on_ack(ack_for(o, OK))
    fgs = s.poll()
    assert all(o.kind == FLOW_GROUP for o in fgs)
    for o in fgs:
        s.on_ack(ack_for(o, OK))
    assert s.converged()
    assert len(s.rtts_ms()) == len(first) + len(groups) + len(fgs)


def test_scheduler_error_ack_is_logged_and_retried(caplog):
    clk = Clock()
    s = OpScheduler(session=1, timeout=1.0, error_backoff=2.0, clock=clk)
    s.set_desired({"A": {(TUNNEL, "T1000"): {"label": 1000, "role": "decap", "next_hop": None}}})
    (op,) = s.poll()
    assert s.on_ack(ack_for(op, ERROR, "switch said no")) == "error"
    assert "switch said no" in caplog.text and s.errors
    clk.t = 1.5
    assert s.poll() == []  # errors back off longer than plain timeouts
    clk.t = 2.5
    (again,) = s.poll()
    assert again.seq > op.seq


def test_dirty_entries_replayed_after_restart(tmp_path):
    clk = Clock()
    store = TedStore(tmp_path / "ted.json")
    s = OpScheduler(session=100, clock=clk)
    s.set_desired(example_desired(s.meta))
    tunnels = s.poll()
    for o in tunnels[:2]:
        s.on_ack(ack_for(o, OK))
    store.save(s.to_json())
    # "crash": a new scheduler from the stored database
    s2 = restore_scheduler(store, clock=clk)
    assert s2.session > 100
    assert s2.meta.labels == s.meta.labels
    replay = s2.poll()
    assert {o.id for o in replay} == {o.id for o in tunnels[2:]}
    assert all(o.session == s2.session for o in replay)
    # a site controller that saw the old session accepts the new one and rejects the old
    r = OpReceiver(tunnels[0].site)
    assert r.admit(tunnels[0])[0] == APPLY
    new = next(o for o in replay if o.site == tunnels[0].site) if any(o.site == tunnels[0].site for o in replay) else None
    if new is not None:
        assert r.admit(new)[0] == APPLY
        assert r.admit(tunnels[0])[1].reason == STALE_SESSION


def test_store_write_is_atomic(tmp_path):
    store = TedStore(tmp_path / "ted.json")
    store.save({"session": 1})
    store.save({"session": 2})
    assert store.load() == {"session": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["ted.json"]  # no temp file left over


# ----------------------------------------------------------------------------- lossy channel

class SiteSim:
    """A site controller's op handling without OpenFlow: receiver + TED (the same classes the
    real controller uses)."""

    def __init__(self, site):
        self.rx = OpReceiver(site)
        self.ted = SiteTed(site)

    def handle(self, op: Op) -> Ack | None:
        verdict, ack = self.rx.admit(op)
        if verdict == REPLY:
            return ack
        if verdict == IGNORE:
            return None
        why = self.ted.check(op)
        if why is None:
            self.ted.apply(op)
            ack = ack_for(op, OK)
        else:
            ack = ack_for(op, ERROR, why)
        self.rx.complete(op, ack)
        return ack


class LossyChannel:
    """Drops, duplicates, delays and reorders messages (both ways)."""

    def __init__(self, rng, drop=0.2, dup=0.2, max_delay=3.0):
        self.rng, self.drop, self.dup, self.max_delay = rng, drop, dup, max_delay
        self.queue: list[tuple[float, int, object]] = []
        self.n = 0

    def send(self, now, msg):
        if self.rng.random() < self.drop:
            return
        copies = 2 if self.rng.random() < self.dup else 1
        for _ in range(copies):
            self.n += 1
            self.queue.append((now + self.rng.uniform(0, self.max_delay), self.n, msg))

    def due(self, now):
        ready = [m for m in self.queue if m[0] <= now]
        self.queue = [m for m in self.queue if m[0] > now]
        self.rng.shuffle(ready)  # reorder whatever is due together
        return [m[2] for m in ready]


def _run_lossy(seed, steps_desired):
    rng = random.Random(seed)
    clk = Clock()
    sched = OpScheduler(session=1, timeout=2.0, error_backoff=2.0, clock=clk)
    sites = {s: SiteSim(s) for s in "ABCD"}
    down, up = LossyChannel(rng), LossyChannel(rng)
    for desired_fn in steps_desired:
        sched.set_desired(desired_fn(sched.meta))
        for _ in range(20000):
            clk.t += 0.25
            for op in sched.poll():
                down.send(clk.t, op)
            for op in down.due(clk.t):
                ack = sites[op.site].handle(op)
                if ack is not None:
                    up.send(clk.t, ack)
            for ack in up.due(clk.t):
                sched.on_ack(ack)
            if sched.converged():
                break
        assert sched.converged(), f"seed {seed}: not converged; dirty={sched.dirty()[:3]}"
        for s, sim in sites.items():
            assert sim.ted.entries == sched.desired.get(s, {}), f"seed {seed}: site {s} differs"
    return sched


@pytest.mark.parametrize("seed", range(8))
def test_ops_over_lossy_channel_converge(seed):
    moved = {"FG1": [(("A", "B"), 0.0), (("A", "C", "B"), 0.5), (("A", "D", "C", "B"), 0.5)],
             "FG2": [(("A", "C"), 1.0), (("A", "D", "C"), 0.0)]}
    sched = _run_lossy(seed, [
        lambda m: example_desired(m),                 # install
        lambda m: example_desired(m, moved),          # re-route both flow groups
        lambda m: {},                                  # TE off: everything removed
        lambda m: example_desired(m),                 # and back
    ])
    states = {r.state for r in sched.history}
    assert "acked" in states


def test_deletes_wait_for_the_drain_time():
    clk = Clock()
    s = OpScheduler(session=1, drain=0.2, clock=clk)
    s.set_desired(example_desired(s.meta))
    while not s.converged():
        for o in s.poll():
            s.on_ack(ack_for(o, OK))
    s.set_desired({})
    fgs = s.poll()
    assert fgs and all(o.kind == FLOW_GROUP for o in fgs)
    for o in fgs:
        s.on_ack(ack_for(o, OK))
    assert s.poll() == []  # flow groups just went: tunnel groups wait for the drain time
    clk.t += 0.25
    tgs = s.poll()
    assert tgs and all(o.kind == TUNNEL_GROUP and o.action == DELETE for o in tgs)


def test_site_that_loses_its_switch_role_pauses_then_converges():
    """A controller whose switch holds it as a slave (b4-failures start-up race) answers
    ``not_ready`` instead of an error ack and re-claims the switch; the server pauses the site
    (as `b4.server` does on not_ready) and, when the controller reports the site ready with
    what it read back from the switch, re-diffs and converges: no endless error retries."""
    clk = Clock()
    sched = OpScheduler(session=1, timeout=1.0, error_backoff=2.0, clock=clk)
    sched.set_desired(example_desired(sched.meta))
    sites = {s: SiteSim(s) for s in "ABCD"}
    refused = {"A"}  # A's switch refuses everything until re-claimed
    rejected = 0
    for _ in range(200):
        clk.t += 0.05
        for op in sched.poll():
            if op.site in refused:
                res = sched.on_ack(ack_for(op, REJECTED, "not_ready"))
                assert res == "retry"
                sched.paused_sites.add(op.site)  # the server's _site_unready
                rejected += 1
                continue
            ack = sites[op.site].handle(op)
            if ack is not None:
                sched.on_ack(ack)
        if "A" in sched.paused_sites and rejected and clk.t > 1.0:
            refused.clear()  # the re-take finished: "ready" with the TED read from the switch
            sched.set_installed("A", dict(sites["A"].ted.entries))
            sched.paused_sites.discard("A")
        if sched.converged():
            break
    assert rejected > 0
    assert sched.converged(), sched.dirty()[:3]
    assert not sched.errors  # refusals are not logged as op failures
    for s, sim in sites.items():
        assert sim.ted.entries == sched.desired.get(s, {})
