"""The VERB voter (the trusted core): the three modes, fault masking, suspects, readmission.

The property tests drive three replicas with a fake clock: two correct replicas apply the
same "truth" changes in the same order, each at its own pace (as replicas fed the same
stream converge at different speeds), and one faulty replica says anything at any time.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verb.core import Mode, Voter, VoterConfig

REPLICAS = ("a", "b", "c")
KEYS = ("k0", "k1", "k2")
VALUES = (None, 1, 2, 3)


@dataclass
class Clock:
    t: float = 0.0

    def __call__(self) -> float:
        return self.t


def make(mode: Mode, window: float = 10.0, timeout: float = 1.0):
    clock = Clock()
    emitted: list[tuple] = []
    v = Voter(VoterConfig(mode, REPLICAS, window=window, consensus_timeout=timeout),
              emitted.extend, clock=clock)
    return v, clock, emitted


# ----------------------------------------------------------------------------------------
# Examples
# ----------------------------------------------------------------------------------------

def test_continuous_majority_outputs_when_two_agree():
    v, clock, out = make(Mode.CONTINUOUS_MAJORITY)
    v.update("a", [("p", 1)])
    assert out == [] and v.output == {}
    v.update("b", [("p", 1)])
    assert out == [("p", 1)]
    v.update("c", [("p", 9)])  # a bogus value alone changes nothing
    assert v.output == {"p": 1} and out == [("p", 1)]
    v.update("a", [("p", None)])
    v.update("b", [("p", None)])
    assert out[-1] == ("p", None) and v.output == {}


def test_bogus_extra_route_is_masked_and_its_replica_suspected():
    v, clock, out = make(Mode.CONTINUOUS_MAJORITY, window=5)
    v.update("c", [("10.9.9.0/25", "hijack")])
    assert out == []
    clock.t = 4
    assert v.tick() == set()
    clock.t = 6
    assert v.tick() == {"c"}


def test_wait_for_consensus_waits_then_falls_back_to_majority():
    v, clock, out = make(Mode.WAIT_FOR_CONSENSUS, timeout=2)
    v.update("a", [("p", 1)])
    v.update("b", [("p", 1)])
    assert out == []  # c has not spoken yet: no consensus
    clock.t = 1
    v.tick()
    assert out == []
    v.update("c", [("p", 1)])
    assert out == [("p", 1)]
    v.update("a", [("p", 2)])
    v.update("b", [("p", 2)])
    clock.t = 2.5
    v.tick()
    assert v.output == {"p": 1}  # waiting since t=1
    clock.t = 3.1
    v.tick()
    assert v.output == {"p": 2}


def test_master_slave_uses_master_at_once_and_switches_when_outvoted():
    v, clock, out = make(Mode.MASTER_SLAVE, window=3)
    assert v.master == "a"
    v.update("a", [("p", 666)])
    assert out == [("p", 666)]  # the master's word goes out at once
    v.update("b", [("p", 1)])
    v.update("c", [("p", 1)])
    clock.t = 2
    assert v.tick() == set() and v.master == "a"
    clock.t = 3.5
    assert v.tick() == {"a"}
    assert v.master == "b" and v.output == {"p": 1} and out[-1] == ("p", 1)


def test_master_slave_switches_when_master_stops_voting():
    v, clock, out = make(Mode.MASTER_SLAVE)
    for r in REPLICAS:
        v.update(r, [("p", 1)])
    v.update("b", [("q", 2)])
    v.set_voting("a", False)  # crashed
    assert v.master == "b" and v.output == {"p": 1, "q": 2}


def test_minority_clock_restarts_when_majority_moves_on():
    v, clock, out = make(Mode.CONTINUOUS_MAJORITY, window=5)
    for r in REPLICAS:
        v.update(r, [("p", 1)])
    v.update("a", [("p", 2)])
    v.update("b", [("p", 2)])  # c lags
    clock.t = 4
    v.update("a", [("p", 3)])
    v.update("b", [("p", 3)])  # c still lags, but only since t=4 on value 3
    clock.t = 8
    assert v.tick() == set()
    clock.t = 9.5
    assert v.tick() == {"c"}


def test_forget_and_readmission():
    v, clock, out = make(Mode.CONTINUOUS_MAJORITY)
    for r in REPLICAS:
        v.update(r, [("p", 1), ("q", 2)])
    v.forget("c")
    assert v.output == {"p": 1, "q": 2} and not v.in_sync("c") and v.disagreements("c") == 2
    v.update("c", [("p", 1)])
    assert not v.in_sync("c")
    v.update("c", [("q", 2)])
    assert v.in_sync("c")
    v.set_voting("c", True)
    assert v.voting == set(REPLICAS)


def test_a_recovering_replica_does_not_vote():
    v, clock, out = make(Mode.CONTINUOUS_MAJORITY)
    v.set_voting("c", False)
    v.update("c", [("p", 1)])
    v.update("a", [("p", 1)])
    assert v.output == {}  # two agree, but one of them is not voting
    v.update("b", [("p", 1)])
    assert v.output == {"p": 1}


# ----------------------------------------------------------------------------------------
# Properties: one faulty replica out of three
# ----------------------------------------------------------------------------------------

@dataclass
class World:
    """Two correct replicas following one truth at their own pace, and a faulty one."""

    voter: Voter
    clock: Clock
    faulty: str
    correct: tuple[str, str]
    truth: dict = field(default_factory=dict)
    queues: dict = field(default_factory=dict)
    held: dict = field(default_factory=dict)  # replica -> key -> value
    violations: list = field(default_factory=list)

    def emit(self, changes):
        # Safety: whatever goes out is what some correct replica holds right now.
        for k, val in changes:
            if not any(self.held[r].get(k) == val for r in self.correct):
                self.violations.append((self.clock.t, k, val, {r: dict(h) for r, h in self.held.items()}))

    def apply(self, r, k, val):
        self.held[r][k] = val
        self.voter.update(r, [(k, val)])


def build(mode: Mode, faulty: str, window=5.0, timeout=1.0) -> World:
    clock = Clock()
    w = World(voter=None, clock=clock, faulty=faulty,  # type: ignore[arg-type]  # set below: the Voter needs w.emit
              correct=tuple(r for r in REPLICAS if r != faulty))
    w.voter = Voter(VoterConfig(mode, REPLICAS, window=window, consensus_timeout=timeout),
                    w.emit, clock=clock)
    w.queues = {r: [] for r in w.correct}
    w.held = {r: {} for r in REPLICAS}
    return w


event = st.one_of(
    st.tuples(st.just("truth"), st.sampled_from(KEYS), st.sampled_from(VALUES)),
    st.tuples(st.just("deliver"), st.integers(0, 1), st.integers(1, 3)),
    st.tuples(st.just("fault"), st.sampled_from(KEYS), st.sampled_from(VALUES)),
    st.tuples(st.just("time"), st.floats(0.0, 3.0), st.just(0)),
)


def run(w: World, events) -> None:
    for kind, a, b in events:
        if kind == "truth":
            w.truth[a] = b
            for r in w.correct:
                w.queues[r].append((a, b))
        elif kind == "deliver":
            r = w.correct[a]
            for _ in range(b):
                if w.queues[r]:
                    w.apply(r, *w.queues[r].pop(0))
        elif kind == "fault":
            w.apply(w.faulty, a, b)
        else:
            w.clock.t += a
            w.voter.tick()


def settle(w: World) -> set[str]:
    """Deliver everything to the correct replicas, then let every timeout expire."""
    for r in w.correct:
        while w.queues[r]:
            w.apply(r, *w.queues[r].pop(0))
    w.clock.t += 100
    suspects = w.voter.tick()
    w.clock.t += 100
    return suspects | w.voter.tick()


def truth_output(w: World) -> dict:
    return {k: v for k, v in w.truth.items() if v is not None}


@settings(max_examples=300, deadline=None)
@given(mode=st.sampled_from([Mode.CONTINUOUS_MAJORITY, Mode.WAIT_FOR_CONSENSUS]),
       faulty=st.sampled_from(REPLICAS), events=st.lists(event, max_size=60))
def test_a_single_fault_never_reaches_the_output(mode, faulty, events):
    w = build(mode, faulty)
    run(w, events)
    suspects = settle(w)
    assert w.violations == []
    assert w.voter.output == truth_output(w)
    assert not suspects & set(w.correct)
    disagrees = any(w.held[faulty].get(k) != w.truth.get(k) for k in KEYS)
    assert (faulty in suspects) == disagrees


@settings(max_examples=300, deadline=None)
@given(faulty=st.sampled_from(REPLICAS), events=st.lists(event, max_size=60))
def test_master_slave_converges_to_the_majority(faulty, events):
    w = build(Mode.MASTER_SLAVE, faulty)
    run(w, events)
    suspects = settle(w)
    disagrees = any(w.held[faulty].get(k) != w.truth.get(k) for k in KEYS)
    if disagrees and w.voter.master != faulty:
        assert faulty in suspects
    assert w.voter.master in w.correct or not disagrees
    assert w.voter.output == truth_output(w) or (not disagrees and w.voter.master == faulty)


@settings(max_examples=200, deadline=None)
@given(events=st.lists(event, max_size=40))
def test_master_slave_switches_master_when_outvoted(events):
    w = build(Mode.MASTER_SLAVE, faulty="a")  # "a" is the master
    run(w, events)
    w.apply("a", "k0", 99)  # the master now says something nobody else says
    settle(w)
    assert w.voter.master in ("b", "c")
    assert w.voter.output == truth_output(w)


@pytest.mark.parametrize("mode", list(Mode))
def test_modes_accept_their_names(mode):
    assert Mode(mode.value) is mode
    assert VoterConfig(mode.value, REPLICAS).quorum == 2


def test_set_master_revotes_from_the_new_master():
    v, clock, out = make(Mode.MASTER_SLAVE)
    v.update("a", [("p", 1)])
    v.update("b", [("p", 2)])
    v.set_master("b")
    assert v.master == "b" and v.output == {"p": 2}
    v.set_voting("c", False)
    v.set_master("c")  # not voting: refused
    assert v.master == "b"


_HELD = st.lists(st.tuples(st.sampled_from(REPLICAS), st.sampled_from(KEYS), st.sampled_from(VALUES)),
                 max_size=30)


def _twins(mode, held):
    """Two voters (with their clocks) that were told the same values."""
    (a, clock_a, _), (b, clock_b, _) = make(mode), make(mode)
    for v in (a, b):
        for r, k, val in held:
            v.update(r, [(k, val)])
    return a, clock_a, b, clock_b


def _in_slices(keys, fn, chunk):
    for i in range(0, len(keys), chunk):
        fn(keys[i:i + chunk])


@settings(max_examples=200, deadline=None)
@given(mode=st.sampled_from(list(Mode)), excluded=st.sampled_from(REPLICAS), held=_HELD,
       chunk=st.integers(1, 3))
def test_an_exclusion_decided_in_slices_ends_where_one_pass_ends(mode, excluded, held, chunk):
    """What the router does with a full table (`BugTolerantRouter.forget`): exclude without
    deciding, then decide the disputed keys a slice at a time; same output, same suspects."""
    one, clock1, sliced, clock2 = _twins(mode, held)
    one.set_voting(excluded, False)
    sliced.set_voting(excluded, False, revote=False)
    _in_slices(sliced.disputed(), sliced.revote, chunk)
    assert sliced.output == one.output and sliced.master == one.master
    clock1.t = clock2.t = 100
    assert sliced.tick() == one.tick() and sliced.output == one.output


@settings(max_examples=300, deadline=None)
@given(mode=st.sampled_from(list(Mode)), excluded=st.sampled_from(REPLICAS), held=_HELD,
       chunk=st.integers(1, 3))
def test_forget_by_dropping_in_slices_ends_where_deciding_every_key_ends(mode, excluded, held, chunk):
    """The router's `forget` (exclude, drop the replica's values a slice at a time without
    deciding, revote the keys voting replicas dispute, a slice at a time) against the
    reference: exclude, then withdraw each of its values through `update` (a decision
    per key). Same output, master, disagreements and suspects."""
    ref, clock1, sliced, clock2 = _twins(mode, held)
    ref.set_voting(excluded, False)
    ref.update(excluded, [(k, None) for k in ref.held_by(excluded)])
    sliced.set_voting(excluded, False, revote=False)
    _in_slices(sliced.held_by(excluded), lambda ks: sliced.drop(excluded, ks), chunk)
    _in_slices(sliced.disputed(), sliced.revote, chunk)
    assert sliced.output == ref.output and sliced.master == ref.master
    assert sliced.candidates() == ref.candidates()
    assert all(sliced.mismatched(r) == ref.mismatched(r) for r in REPLICAS)
    clock1.t = clock2.t = 100
    assert sliced.tick() == ref.tick() and sliced.output == ref.output


@settings(max_examples=200, deadline=None)
@given(mode=st.sampled_from(list(Mode)), held=_HELD, excluded=st.sampled_from(REPLICAS))
def test_a_key_nobody_holds_leaves_nothing_behind(mode, held, excluded):
    """A full table's worth of keys comes and goes: a key nobody holds keeps no slot, no
    clock and no disagreement (also after a replica was forgotten)."""
    v, clock, _ = make(mode)
    for r, k, val in held:
        v.update(r, [(k, val)])
    v.forget(excluded)
    v.set_voting(excluded, True)
    for r in REPLICAS:
        v.update(r, [(k, None) for k in KEYS])
    clock.t = 100
    assert v.tick() == set()
    assert v.output == {} and v.slots == {} and v.candidates() == {}
    assert all(v.in_sync(r) and not v.minority[r] and not v.mismatched(r) for r in REPLICAS)


def test_a_waiting_key_whose_holders_were_dropped_leaves_no_slot():
    """Wait-for-consensus: a key two replicas hold waits for the third; both are then
    excluded and dropped (the router's `forget`, a slice at a time): once decided, nothing
    of the key is left."""
    v, clock, _ = make(Mode.WAIT_FOR_CONSENSUS)
    v.update("a", [("k", 1)])
    v.update("b", [("k", 1)])
    assert v.pending and v.output == {}
    for r in ("a", "b"):
        v.set_voting(r, False, revote=False)
        v.drop(r, ["k"])
    clock.t = 5
    v.tick()
    assert v.slots == {} and not v.pending and v.output == {}
