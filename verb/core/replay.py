"""The replay log: a neighbour's incoming UPDATE stream, recorded so a new replica can be
brought up to date by replaying it.

Each entry keeps the message as received and its effect on the Adj-RIB-In (withdrawn
prefixes, announced prefixes and their raw path attributes). Readers (one per replica
session) walk the log in order with a cursor, so live replication and replay are one
mechanism. When the log holds far more prefix operations than live routes, and every
reader is caught up, it is compacted into one message per group of prefixes sharing
attributes: replaying the compacted log yields the same Adj-RIB-In.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

# (path attributes, prefixes) -> [(UPDATE message, the prefixes it announces)]: plumbing
Encoder = Callable[[bytes, list[str]], list[tuple[bytes, list[str]]]]


@dataclass(frozen=True)
class Entry:
    """One recorded message and what it did to the Adj-RIB-In."""

    message: bytes
    withdrawn: tuple[str, ...] = ()
    attrs: bytes | None = None
    announced: tuple[str, ...] = ()

    @property
    def ops(self) -> int:
        return len(self.withdrawn) + len(self.announced)


class Cursor:
    """One reader's position in the log."""

    def __init__(self, log: "ReplayLog"):
        self.log = log
        self.pos = 0

    def take(self, limit: int = 64) -> list[Entry]:
        """The next entries (at most `limit`), advancing the cursor."""
        out = self.log.entries[self.pos:self.pos + limit]
        self.pos += len(out)
        return out

    @property
    def caught_up(self) -> bool:
        return self.pos >= len(self.log.entries)

    def close(self) -> None:
        self.log.cursors.discard(self)


class ReplayLog:
    """The recorded incoming stream of one neighbour session."""

    def __init__(self, encode: Encoder, slack: int = 1000):
        self.encode = encode
        self.slack = slack
        self.entries: list[Entry] = []
        self.rib: dict[str, bytes] = {}  # the Adj-RIB-In: prefix -> raw path attributes
        self.cursors: set[Cursor] = set()
        self.listeners: list[Callable[[], None]] = []
        self.ops = 0
        self.compactions = 0

    def append(self, entry: Entry) -> None:
        """Record one incoming message (in arrival order) and wake the readers."""
        self.maybe_compact()  # before appending: a caught-up reader has not seen `entry` yet
        self.entries.append(entry)
        self.ops += entry.ops
        for p in entry.withdrawn:
            self.rib.pop(p, None)
        if entry.attrs is not None:
            for p in entry.announced:
                self.rib[p] = entry.attrs
        for notify in self.listeners:
            notify()

    def cursor(self) -> Cursor:
        """A reader starting at the beginning (a new replica replays everything)."""
        c = Cursor(self)
        self.cursors.add(c)
        return c

    def maybe_compact(self) -> bool:
        """Compact when operations far outnumber live routes and every reader is caught up."""
        if self.ops <= 2 * len(self.rib) + self.slack:
            return False
        if not all(c.caught_up for c in self.cursors):
            return False
        self.compact()
        return True

    def compact(self) -> None:
        """Replace the log by announcements of the current Adj-RIB-In."""
        groups: dict[bytes, list[str]] = {}
        for prefix, attrs in self.rib.items():
            groups.setdefault(attrs, []).append(prefix)
        self.entries = [Entry(msg, (), attrs, tuple(chunk))
                        for attrs, prefixes in groups.items()
                        for msg, chunk in self.encode(attrs, prefixes)]
        self.ops = sum(e.ops for e in self.entries)
        self.compactions += 1
        for c in self.cursors:
            c.pos = len(self.entries)

    def clear(self) -> None:
        """Forget the stream (the neighbour session went down)."""
        self.entries.clear()
        self.rib.clear()
        self.ops = 0
        for c in self.cursors:
            c.pos = 0
