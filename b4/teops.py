"""TE ops: sequenced, acknowledged, retried delivery of TED changes to site controllers.

Server side (`OpScheduler`): the desired TED is diffed against the installed (acked) one;
every differing entry is *dirty*. Dirty entries go out as ops carrying the server's session
id and a per-site sequence id, one phase at a time (`b4.ted.PHASES`: tunnels, then tunnel
groups, then flow groups; deletes in the reverse order), at most one op in flight per entry.
An entry becomes clean only when the site controller acks the op's own sequence id after its
switches' barrier; an op not acked within the timeout is resent with a *new* sequence id.
Deleting tunnel groups and tunnels waits ``drain`` seconds after the previous phase's last
ack (make before break: packets still queued on links, or matched by a software switch's
flow cache, keep using them for a moment). The
state (session, sequence counters, desired and installed TEDs, id assignment) is persisted
with atomic writes; after a restart a new session starts and the dirty entries are replayed.

Site-controller side (`OpReceiver` + `SiteTed`): ops from an older session are rejected
(``stale_session``); a newer session resets the sequence; a sequence id at or below the last
one applied is a duplicate (answered with the ack it already got) or else rejected
(``stale_seq``); an op that would break the TED's references (a tunnel group naming an
unknown tunnel, deleting a tunnel still in use) gets an error ack. Applying an op twice
leaves the same state (add of an existing entry is a modify, delete of a missing one is a
no-op).
"""
from __future__ import annotations

import collections
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from b4.ted import (ACTIONS, DELETE, FLOW_GROUP, KINDS, PHASES, TUNNEL, TUNNEL_GROUP, Key,
                    OpTemplate, Ted, TedError, TedMeta, check_entry, diff, references, ted_from_json,
                    ted_to_json)

log = logging.getLogger(__name__)

OK, ERROR, REJECTED = "ok", "error", "rejected"
DRAIN_PHASES = (4, 5)  # deleting tunnel groups, then tunnels
STALE_SEQ, STALE_SESSION, NOT_MASTER = "stale_seq", "stale_session", "not_master"


class OpFormatError(ValueError):
    """A message that is not a well-formed op or ack."""


@dataclass(frozen=True)
class Op:
    """One TE op as it travels to a site controller."""

    site: str
    session: int
    seq: int
    action: str
    kind: str
    id: str
    entry: dict[str, Any] | None = None

    @property
    def key(self) -> Key:
        return (self.kind, self.id)

    def to_json(self) -> dict[str, Any]:
        d = {"type": "op", **asdict(self)}
        if self.entry is None:
            del d["entry"]
        return d

    @classmethod
    def from_json(cls, d: Any) -> "Op":
        """Parse and validate an op; raises OpFormatError naming the problem."""
        if not isinstance(d, Mapping):
            raise OpFormatError("op must be a JSON object")
        for f, typ in (("site", str), ("session", int), ("seq", int), ("action", str), ("kind", str), ("id", str)):
            v = d.get(f)
            if not isinstance(v, typ) or isinstance(v, bool):
                raise OpFormatError(f"op field {f!r} must be {typ.__name__}, got {v!r}")
        if d["action"] not in ACTIONS:
            raise OpFormatError(f"op action must be one of {', '.join(ACTIONS)}, got {d['action']!r}")
        if d["kind"] not in KINDS:
            raise OpFormatError(f"op kind must be one of {', '.join(KINDS)}, got {d['kind']!r}")
        if d["seq"] < 1 or d["session"] < 0:
            raise OpFormatError("op seq must be >= 1 and session >= 0")
        entry = d.get("entry")
        if d["action"] != DELETE:
            try:
                check_entry(d["kind"], d["id"], entry)
            except TedError as e:
                raise OpFormatError(str(e)) from None
        return cls(d["site"], d["session"], d["seq"], d["action"], d["kind"], d["id"],
                   dict(entry) if entry is not None and d["action"] != DELETE else None)


@dataclass(frozen=True)
class Ack:
    """A site controller's answer to one op."""

    site: str
    session: int
    seq: int
    status: str  # ok | error | rejected
    reason: str = ""
    duplicate: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"type": "ack", **asdict(self)}

    @classmethod
    def from_json(cls, d: Any) -> "Ack":
        if not isinstance(d, Mapping):
            raise OpFormatError("ack must be a JSON object")
        try:
            return cls(str(d["site"]), int(d["session"]), int(d["seq"]), str(d["status"]),
                       str(d.get("reason", "")), bool(d.get("duplicate", False)))
        except (KeyError, TypeError, ValueError) as e:
            raise OpFormatError(f"bad ack: {e}") from None


def ack_for(op: Op, status: str, reason: str = "", duplicate: bool = False) -> Ack:
    return Ack(op.site, op.session, op.seq, status, reason, duplicate)


# =========================================================================== site side

APPLY, REPLY, IGNORE = "apply", "reply", "ignore"


class OpReceiver:
    """One site's session and sequence check (the op state machine of a site controller)."""

    def __init__(self, site: str, remember: int = 4096):
        self.site = site
        self.session: int | None = None
        self.last_seq = 0
        self._done: collections.OrderedDict[int, Ack] = collections.OrderedDict()
        self._in_progress: set[int] = set()
        self._remember = remember

    def admit(self, op: Op) -> tuple[str, Ack | None]:
        """What to do with an op: (APPLY, None), (REPLY, ack) or (IGNORE, None) for a
        duplicate of an op still being applied (its ack follows when its barrier returns)."""
        if self.session is not None and op.session < self.session:
            return REPLY, ack_for(op, REJECTED, STALE_SESSION)
        if self.session is None or op.session > self.session:
            if self.session is not None:
                log.info("site %s: new session %d (was %d)", self.site, op.session, self.session)
            self.session, self.last_seq = op.session, 0
            self._done.clear()
            self._in_progress.clear()
        if op.seq in self._done:
            a = self._done[op.seq]
            return REPLY, Ack(a.site, a.session, a.seq, a.status, a.reason, duplicate=True)
        if op.seq in self._in_progress:
            return IGNORE, None
        if op.seq <= self.last_seq:
            return REPLY, ack_for(op, REJECTED, STALE_SEQ)
        self.last_seq = op.seq
        self._in_progress.add(op.seq)
        return APPLY, None

    def complete(self, op: Op, ack: Ack) -> None:
        """Record the ack an applied op got (duplicates of it get the same answer)."""
        if op.session != self.session:
            return
        self._in_progress.discard(op.seq)
        self._done[op.seq] = ack
        while len(self._done) > self._remember:
            self._done.popitem(last=False)


class SiteTed:
    """The TE entries installed at one site, with the reference checks ops must pass.

    ``neighbors``: the sites a tunnel may name as next hop from here (None: anything)."""

    def __init__(self, site: str, neighbors: Iterable[str] | None = None, entries: Ted | None = None):
        self.site = site
        self.neighbors = set(neighbors) if neighbors is not None else None
        self.entries: Ted = dict(entries or {})

    def check(self, op: Op) -> str | None:
        """Why ``op`` cannot be applied here, or None."""
        e = op.entry
        if op.action == DELETE:
            users = [k for k in references(self.entries).get(op.key, set())]
            if users and op.key in self.entries:
                return f"{op.kind} {op.id} is still used by {', '.join(sorted(i for _, i in users))}"
            return None
        assert e is not None
        if op.kind == TUNNEL:
            if e["next_hop"] is not None and self.neighbors is not None and e["next_hop"] not in self.neighbors:
                return f"tunnel {op.id}: next hop {e['next_hop']} is not a neighbour of {self.site}"
            old = self.entries.get(op.key)
            if old is not None and old["role"] == "encap" and e["role"] != "encap" and \
                    references(self.entries).get(op.key):
                return f"tunnel {op.id} is still used by a tunnel group as encap"
        elif op.kind == TUNNEL_GROUP:
            for b in e["buckets"]:
                t = self.entries.get((TUNNEL, b["tunnel"]))
                if t is None:
                    return f"tunnel group {op.id}: unknown tunnel {b['tunnel']}"
                if t["role"] != "encap":
                    return f"tunnel group {op.id}: tunnel {b['tunnel']} is {t['role']} at {self.site}, not encap"
        elif op.kind == FLOW_GROUP:
            if (TUNNEL_GROUP, e["tunnel_group"]) not in self.entries:
                return f"flow group {op.id}: unknown tunnel group {e['tunnel_group']}"
        return None

    def apply(self, op: Op) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """Apply (idempotently); returns (old entry, new entry)."""
        old = self.entries.get(op.key)
        if op.action == DELETE:
            self.entries.pop(op.key, None)
            return old, None
        self.entries[op.key] = dict(op.entry or {})
        return old, self.entries[op.key]


# =========================================================================== server side

@dataclass
class Pending:
    op: Op
    sent_at: float
    first_sent_at: float
    tries: int = 1


@dataclass
class OpRecord:
    """One op's life, for `ops` and the latency statistics."""

    site: str
    seq: int
    action: str
    kind: str
    id: str
    sent_at: float
    state: str = "sent"  # sent | acked | error | rejected | superseded
    rtt_ms: float | None = None
    reason: str = ""
    tries: int = 1

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class OpScheduler:
    """The TE server's op state: desired vs installed, in-flight ops, timeouts, persistence.

    Pure logic: the caller sends what `poll` returns and feeds acks to `on_ack`. ``clock`` is
    injectable for tests."""

    def __init__(self, session: int, *, timeout: float = 1.0, error_backoff: float = 2.0, drain: float = 0.0,
                 clock: Callable[[], float] = time.monotonic, history: int = 5000):
        self.session = session
        self.timeout = timeout
        self.drain = drain  # wait after a phase before deleting what it stopped using
        self._phase_acked_at: dict[int, float] = {}
        self.error_backoff = error_backoff
        self.clock = clock
        self.desired: dict[str, Ted] = {}
        self.installed: dict[str, Ted] = {}
        self.next_seq: dict[str, int] = {}
        self.pending: dict[str, dict[Key, Pending]] = {}
        self._by_seq: dict[tuple[str, int], Key] = {}
        self._records: dict[tuple[str, int], OpRecord] = {}
        self.history: collections.deque[OpRecord] = collections.deque(maxlen=history)
        self.meta = TedMeta()
        self.errors: collections.deque[tuple[float, str]] = collections.deque(maxlen=200)
        self.paused_sites: set[str] = set()  # e.g. no master controller reachable

    # -- state changes ----------------------------------------------------------------------
    def set_desired(self, desired: Mapping[str, Ted]) -> None:
        self.desired = {s: dict(t) for s, t in desired.items()}

    def set_installed(self, site: str, ted: Ted) -> None:
        """Adopt what a site controller reports as installed (after a resync); its in-flight
        ops are forgotten (their entries are diffed afresh)."""
        self.installed[site] = dict(ted)
        for p in self.pending.pop(site, {}).values():
            self._by_seq.pop((site, p.op.seq), None)
            rec = self._records.pop((site, p.op.seq), None)
            if rec is not None and rec.state == "sent":
                rec.state = "superseded"

    def new_session(self, session: int) -> None:
        """Start a new session (after a restart or a takeover): sequence ids restart and
        every in-flight op is forgotten; dirty entries will be replayed."""
        if session <= self.session:
            raise ValueError(f"new session {session} must be above {self.session}")
        self.session = session
        self.next_seq = {}
        for site in list(self.pending):
            self.set_installed(site, self.installed.get(site, {}))

    # -- views ------------------------------------------------------------------------------
    def dirty(self) -> list[OpTemplate]:
        return diff(self.installed, self.desired)

    def converged(self) -> bool:
        return not self.dirty() and not any(self.pending.values())

    def in_flight(self) -> int:
        return sum(len(p) for p in self.pending.values())

    def rtts_ms(self) -> list[float]:
        return [r.rtt_ms for r in self.history if r.rtt_ms is not None and r.state == "acked"]

    # -- the loop ---------------------------------------------------------------------------
    def _seq(self, site: str) -> int:
        s = self.next_seq.get(site, 0) + 1
        self.next_seq[site] = s
        return s

    def poll(self, now: float | None = None) -> list[Op]:
        """Ops to send now: the current phase's dirty entries with nothing in flight, and
        in-flight ops whose ack is overdue (resent with a new sequence id)."""
        now = self.clock() if now is None else now
        dirty = self.dirty()
        out: list[Op] = []
        if not dirty:
            return out
        phase = min(t.phase for t in dirty)
        if phase in DRAIN_PHASES and self.drain > 0:
            # Make before break: what the previous phases stopped pointing at may still see
            # packets for a moment (queued on links, or in a switch's flow cache).
            last = max((at for p, at in self._phase_acked_at.items() if p < phase), default=None)
            if last is not None and now - last < self.drain:
                return out
        for t in dirty:
            if t.phase != phase or t.site in self.paused_sites:
                continue
            pend = self.pending.setdefault(t.site, {})
            p = pend.get(t.key)
            if p is not None:
                wait = self.error_backoff if self._record_of(p).state == "error" else self.timeout
                if now - p.sent_at < wait:
                    continue
                self._by_seq.pop((t.site, p.op.seq), None)
                old = self._records.pop((t.site, p.op.seq), None)
                if old is not None and old.state == "sent":
                    old.state = "superseded"
                tries, first = p.tries + 1, p.first_sent_at
                log.info("site %s: %s %s %s unacked after %.2f s; resending (try %d)",
                         t.site, t.action, t.kind, t.id, now - p.sent_at, tries)
            else:
                tries, first = 1, now
            op = Op(t.site, self.session, self._seq(t.site), t.action, t.kind, t.id, t.entry)
            pend[t.key] = Pending(op, now, first, tries)
            self._by_seq[(t.site, op.seq)] = t.key
            rec = OpRecord(t.site, op.seq, op.action, op.kind, op.id, now, tries=tries)
            self._records[(t.site, op.seq)] = rec
            self.history.append(rec)
            out.append(op)
        return out

    def _record_of(self, p: Pending) -> OpRecord:
        return self._records.get((p.op.site, p.op.seq)) or OpRecord(p.op.site, p.op.seq, "", "", "", 0)

    def on_ack(self, ack: Ack, now: float | None = None) -> str:
        """Account for an ack; returns what it did: ``clean``, ``error``, ``retry``, ``stale``."""
        now = self.clock() if now is None else now
        if ack.session != self.session:
            return "stale"
        key = self._by_seq.get((ack.site, ack.seq))
        p = self.pending.get(ack.site, {}).get(key) if key is not None else None
        if p is None or p.op.seq != ack.seq:
            return "stale"  # an ack for a superseded copy
        rec = self._records.get((ack.site, ack.seq))
        if ack.status == OK:
            self._phase_acked_at[PHASES[(p.op.action, p.op.kind)]] = now
            self._by_seq.pop((ack.site, ack.seq), None)
            del self.pending[ack.site][key]
            inst = self.installed.setdefault(ack.site, {})
            if p.op.action == DELETE:
                inst.pop(key, None)
            else:
                inst[key] = dict(p.op.entry or {})
            if rec is not None:
                rec.state, rec.rtt_ms, rec.tries = "acked", (now - p.sent_at) * 1000.0, p.tries
                self._records.pop((ack.site, ack.seq), None)
            return "clean"
        if ack.status == REJECTED:
            # stale_seq (reordered behind a newer op) or not_master: send again at once.
            self._by_seq.pop((ack.site, ack.seq), None)
            del self.pending[ack.site][key]
            if rec is not None:
                rec.state, rec.reason = "rejected", ack.reason
                self._records.pop((ack.site, ack.seq), None)
            return "retry"
        log.warning("site %s: %s %s %s failed: %s", ack.site, p.op.action, p.op.kind, p.op.id, ack.reason)
        self.errors.append((now, f"{ack.site}: {p.op.action} {p.op.kind} {p.op.id}: {ack.reason}"))
        if rec is not None:
            rec.state, rec.reason = "error", ack.reason
        p.sent_at = now  # retried after error_backoff
        return "error"

    # -- persistence ------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {"version": 1, "session": self.session, "next_seq": self.next_seq,
                "desired": {s: ted_to_json(t) for s, t in self.desired.items()},
                "installed": {s: ted_to_json(t) for s, t in self.installed.items()},
                "meta": self.meta.to_json()}

    def load_json(self, d: Mapping[str, Any]) -> None:
        """Restore persisted state (keeps this object's own session)."""
        self.desired = {s: ted_from_json(t) for s, t in d.get("desired", {}).items()}
        self.installed = {s: ted_from_json(t) for s, t in d.get("installed", {}).items()}
        self.meta = TedMeta.from_json(d.get("meta", {}))
        self.pending, self._by_seq, self._records = {}, {}, {}
        self.next_seq = {}


def new_session_id(previous: int = 0) -> int:
    """A session id above ``previous`` (milliseconds since the epoch, or previous + 1)."""
    return max(previous + 1, int(time.time() * 1000))


class TedStore:
    """The TE server's database on disk: one JSON file, replaced atomically."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def load(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as e:
            log.error("TE database %s unreadable (%s); starting empty", self.path, e)
            return None

    def save(self, data: Mapping[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise


def restore_scheduler(store: TedStore, **kwargs: Any) -> OpScheduler:
    """A scheduler from the persisted database with a fresh session above the stored one."""
    data = store.load() or {}
    sched = OpScheduler(new_session_id(int(data.get("session", 0))), **kwargs)
    if data:
        sched.load_json(data)
        log.info("restored TE database %s: %d dirty entries to replay", store.path, len(sched.dirty()))
    return sched
