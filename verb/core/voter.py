"""The voter: per-key voting over the replicas' candidate values, in the paper's three modes.

A *key* is what is voted on (a FIB prefix, or a (neighbour, prefix) pair for outgoing
UPDATEs); a *value* is a replica's normalized candidate for it (any hashable; `None` means
"the replica has nothing for this key", which is a vote for absence). The voter knows
nothing about BGP or netlink: callers feed it values and receive the voted changes.

Modes:
- master-slave: the master's value goes out at once; a master that stays outvoted by a
  majority past the window (or stops voting) is replaced by a replica of the majority.
- continuous-majority: a value goes out as soon as a majority of all replicas holds it.
- wait-for-consensus: a value goes out when every voting replica holds it (and they are a
  majority); a majority value goes out anyway after `consensus_timeout`.

A replica in the minority for longer than `window` (the disagreement tolerated during
convergence) on any key is a *suspect*; the replica manager recovers suspects. The clock
restarts whenever the majority value of a key changes, so a slow but correct replica gets
`window` seconds to catch up with each change.
"""
from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import Callable, Hashable, Iterable

Key = Hashable
Value = Hashable  # None = absent
Change = tuple[Key, Value]


class Mode(str, enum.Enum):
    MASTER_SLAVE = "master-slave"
    CONTINUOUS_MAJORITY = "continuous-majority"
    WAIT_FOR_CONSENSUS = "wait-for-consensus"


@dataclass(frozen=True)
class VoterConfig:
    """How one voter votes; `replicas` names every replica (N), in master-preference order."""

    mode: Mode
    replicas: tuple[str, ...]
    window: float = 10.0
    consensus_timeout: float = 1.0

    @property
    def quorum(self) -> int:
        """A majority of all N replicas (a crashed replica still counts in N)."""
        return len(self.replicas) // 2 + 1


_NOTHING: dict = {}  # the candidates of a key nobody holds (read only)


class Voter:
    """Votes on keys; `emit` receives each batch of output changes [(key, value or None)]."""

    def __init__(self, config: VoterConfig, emit: Callable[[list[Change]], None],
                 clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.mode = Mode(config.mode)
        self.emit = emit
        self.clock = clock
        self.values: dict[Key, dict[str, Value]] = {}  # key -> {replica: value}, present only
        self.output: dict[Key, Value] = {}  # voted values, present only
        self.voting: set[str] = set(config.replicas)
        self.master: str | None = config.replicas[0] if config.replicas else None
        self.minority: dict[str, dict[Key, float]] = {r: {} for r in config.replicas}
        self.mismatch: dict[str, set[Key]] = {r: set() for r in config.replicas}
        self.pending: dict[Key, float] = {}  # wait-for-consensus: key -> majority waiting since
        self._quorum = config.quorum
        self._out: list[Change] = []

    # ----- inputs -----
    def update(self, replica: str, changes: Iterable[Change]) -> None:
        """A replica's candidate values changed (value None: it withdrew the key)."""
        now = self.clock()
        # runs once per prefix of a full table: the lookups are hoisted and the mismatch
        # bookkeeping is inline
        values, output, mismatch = self.values, self.output, self.mismatch[replica]
        for key, value in changes:
            vals = values.get(key)
            if value is None:
                if vals is not None:
                    vals.pop(replica, None)
                    if not vals:
                        del values[key]
            elif vals is None:
                values[key] = {replica: value}
            else:
                vals[replica] = value
            if value == output.get(key):
                mismatch.discard(key)
            else:
                mismatch.add(key)
            self._decide(key, now)
        self._flush()

    def set_voting(self, replica: str, voting: bool, revote: bool = True) -> None:
        """Admit a replica to voting, or exclude it (crashed, recovering). `revote=False`:
        the caller decides the disputed keys again itself, a slice at a time (`revote(keys)`)."""
        if voting:
            self.voting.add(replica)
        else:
            self.voting.discard(replica)
            self.minority[replica].clear()
        if self.master not in self.voting:
            self.master = self._next_master()
        elif voting and self.master is None:
            self.master = replica
        if revote:
            self.revote()

    def set_mode(self, mode: Mode | str, revote: bool = True) -> None:
        """Switch voting mode at run time; keys are decided again where that can matter
        (`revote=False`: by the caller, a slice at a time)."""
        self.mode = Mode(mode)
        self.pending.clear()
        if revote:
            self.revote()

    def set_master(self, replica: str) -> None:
        """Make a voting replica the master (to keep several voters on one master)."""
        if replica in self.voting and replica != self.master:
            self.master = replica
            self.revote()

    def forget(self, replica: str) -> None:
        """Drop everything a replica said (it is being replaced); it stops voting. In one
        pass: with a full table the router drives the same steps a slice at a time."""
        self.set_voting(replica, False, revote=False)
        self.drop(replica, self.held_by(replica))
        self.revote()

    def held_by(self, replica: str) -> list[Key]:
        """The keys a replica holds a value for."""
        return [k for k, vals in self.values.items() if replica in vals]

    def drop(self, replica: str, keys: Iterable[Key]) -> None:
        """Drop an excluded replica's values for `keys` (after `set_voting(replica, False)`).
        Nothing is decided: a replica that does not vote changes no vote (`revote` decides
        what its exclusion changed), so a full table's worth is dict removals only."""
        assert replica not in self.voting, "drop the values of an excluded replica only"
        values, output, mismatch = self.values, self.output, self.mismatch[replica]
        for key in keys:
            vals = values.get(key)
            if vals is not None and vals.pop(replica, None) is not None and not vals:
                del values[key]
            if key in output:
                mismatch.add(key)
            else:
                mismatch.discard(key)

    def revote(self, keys: Iterable[Key] | None = None) -> None:
        """Decide again (after the voting set or the master changed) every disputed key, or
        only `keys` (a slice of them): where all agree with the output, no vote can change."""
        now = self.clock()
        for key in self.disputed() if keys is None else keys:
            self._decide(key, now)
        self._flush()

    def disputed(self) -> list[Key]:
        """The keys where some voting replica differs from the output: where every voting
        replica agrees with it no vote can change (an excluded replica's values count in
        no vote, and after an exclusion it may differ on every key)."""
        return list(set().union(*(self.mismatch[r] for r in self.voting)))

    def tick(self) -> set[str]:
        """Apply timeouts; returns the suspects (voting replicas outvoted past the window).

        In master-slave mode an outvoted master is replaced here by the first replica that
        is not a suspect."""
        now = self.clock()
        for key, since in list(self.pending.items()):
            if now - since >= self.config.consensus_timeout:
                self._decide(key, now)
        suspects = self.suspects(now)
        if self.master in suspects or self.master not in self.voting:
            new = self._next_master(exclude=suspects)
            if new is not None and new != self.master:  # all suspects: keep the master
                self.master = new
                self.revote()
        self._flush()
        return suspects

    # ----- queries -----
    def suspects(self, now: float | None = None) -> set[str]:
        """The voting replicas outvoted on some key for longer than the window. A replica's
        minority clocks are started in time order (at the voter's clock, which never goes
        back) and kept in that order, so its oldest is its first: no walk over what may be
        a whole table's worth of keys while a replica lags (min() of them, once per check,
        was ~4% of the hypervisor's CPU over a 1M-prefix load)."""
        now = self.clock() if now is None else now
        return {r for r, keys in self.minority.items()
                if r in self.voting and keys and now - next(iter(keys.values())) > self.config.window}

    def in_sync(self, replica: str) -> bool:
        """Whether the replica holds exactly the voted output (the readmission test)."""
        return not self.mismatch[replica]

    def disagreements(self, replica: str) -> int:
        return len(self.mismatch[replica])

    # ----- the vote -----
    def _decide(self, key: Key, now: float) -> None:
        # runs once per key and replica of a full table: the majority count and the
        # minority clocks are inline, in one pass each over the voting replicas
        vals = self.values.get(key, _NOTHING)
        voting, minority = self.voting, self.minority
        # The most common value among the voting replicas, the first to reach the highest
        # count. Grouped by equality, not in a dict: a value (a route's attributes) would be
        # hashed anew each time (tuples do not keep their hash), and there are a few voters.
        seen: list[Value] = []
        counts: list[int] = []
        for r in voting:
            v = vals.get(r)
            for i, w in enumerate(seen):
                if w == v:
                    counts[i] += 1
                    break
            else:
                seen.append(v)
                counts.append(1)
        if len(seen) == 1:  # unanimous, the common case
            value, n = seen[0], counts[0]
            voters = n
        elif not seen:
            value, n, voters = None, 0, 0
        else:
            n = max(counts)
            value, voters = seen[counts.index(n)], len(voting)
        quorate = n >= self._quorum
        # The minority clocks: time every voting replica that differs from a quorate
        # majority; nobody is in the minority when all agree or none is quorate. A majority
        # cannot move straight from one value to another while a third replica stays
        # outside it: it passes through "no majority", which clears the clocks, so a
        # lagging replica is timed afresh against each new value.
        if quorate and n != voters:
            for r in voting:
                if vals.get(r) == value:
                    minority[r].pop(key, None)
                else:
                    minority[r].setdefault(key, now)
        else:
            for r in voting:
                minority[r].pop(key, None)
        current = self.output.get(key)
        if self.mode is Mode.MASTER_SLAVE:
            new = vals.get(self.master) if self.master in voting else current
        elif not quorate:
            new = current
        elif self.mode is Mode.CONTINUOUS_MAJORITY or n == voters or value == current:
            new = value
        else:  # wait-for-consensus: a majority that is not yet everybody
            since = self.pending.setdefault(key, now)
            new = value if now - since >= self.config.consensus_timeout else current
        if not quorate or new == value:
            self.pending.pop(key, None)
        if new != current:
            self._set_output(key, new)

    def _set_output(self, key: Key, value: Value) -> None:
        if value is None:
            self.output.pop(key, None)
        else:
            self.output[key] = value
        vals, mismatch = self.values.get(key, _NOTHING), self.mismatch
        for r in self.config.replicas:  # who now differs from the output (`value`)
            if vals.get(r) == value:
                mismatch[r].discard(key)
            else:
                mismatch[r].add(key)
        self._out.append((key, value))

    def _flush(self) -> None:
        if self._out:
            out, self._out = self._out, []
            self.emit(out)

    def _next_master(self, exclude: frozenset[str] | set[str] = frozenset()) -> str | None:
        """The first voting replica (in the configured order) not excluded."""
        return next((r for r in self.config.replicas if r in self.voting and r not in exclude), None)
