"""The replay log: recorded order, compaction to the Adj-RIB-In, cursors across compaction."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from verb.core.replay import Entry, ReplayLog

PREFIXES = [f"10.0.{i}.0/24" for i in range(8)]
ATTRS = [b"A", b"B", b"C"]


def chunked(attrs: bytes, prefixes: list[str]) -> list[tuple[bytes, list[str]]]:
    """A stand-in encoder: three prefixes per message."""
    return [(attrs + b":" + ",".join(prefixes[i:i + 3]).encode(), prefixes[i:i + 3])
            for i in range(0, len(prefixes), 3)]


def replay(entries: list[Entry], rib: dict | None = None) -> dict:
    rib = {} if rib is None else rib
    for e in entries:
        for p in e.withdrawn:
            rib.pop(p, None)
        if e.attrs is not None:
            for p in e.announced:
                rib[p] = e.attrs
    return rib


entry = st.builds(
    lambda w, a, n: Entry(b"raw", tuple(w), a if n else None, tuple(n)),
    st.lists(st.sampled_from(PREFIXES), max_size=3),
    st.sampled_from(ATTRS),
    st.lists(st.sampled_from(PREFIXES), max_size=4))


@settings(max_examples=300, deadline=None)
@given(entries=st.lists(entry, max_size=50), slack=st.integers(0, 20))
def test_replaying_the_log_rebuilds_the_adj_rib_in(entries, slack):
    log = ReplayLog(chunked, slack=slack)
    live = log.cursor()
    live_rib: dict = {}
    for e in entries:
        log.append(e)
        replay(live.take(1000), live_rib)  # a replica kept up to date as messages arrive
    assert live_rib == replay(entries) == log.rib
    late = log.cursor()  # a replacement replica replays whatever the log holds now
    assert replay(late.take(10_000)) == log.rib
    assert late.caught_up


def test_compaction_waits_for_readers_and_keeps_order():
    log = ReplayLog(chunked, slack=0)
    slow = log.cursor()
    for _ in range(10):
        log.append(Entry(b"m", (), b"A", (PREFIXES[0],)))
    assert log.compactions == 0 and len(log.entries) == 10  # a reader is behind
    slow.take(100)
    log.append(Entry(b"m", (PREFIXES[0],), None, ()))  # compacts first, then records
    assert log.compactions == 1 and log.rib == {}
    assert [(e.withdrawn, e.announced) for e in log.entries] == [((), (PREFIXES[0],)),
                                                                ((PREFIXES[0],), ())]
    assert [e.withdrawn for e in slow.take()] == [(PREFIXES[0],)]


def test_compacted_messages_come_from_the_encoder():
    log = ReplayLog(chunked)
    for p in PREFIXES:
        log.append(Entry(b"m", (), b"A", (p,)))
    log.compact()
    assert [len(e.announced) for e in log.entries] == [3, 3, 2]
    assert log.entries[0].message.startswith(b"A:10.0.0.0/24")


def test_clear_rewinds_readers_and_notifies():
    log = ReplayLog(chunked)
    woken = []
    log.listeners.append(lambda: woken.append(1))
    c = log.cursor()
    log.append(Entry(b"m", (), b"A", (PREFIXES[0],)))
    c.take()
    log.clear()
    assert c.pos == 0 and log.rib == {} and woken == [1]
    c.close()
    assert c not in log.cursors
