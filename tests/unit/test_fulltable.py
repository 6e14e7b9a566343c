"""The full-table generator: today's prefix-length mix, distinct non-overlapping prefixes,
realistic AS paths, deterministic for a seed, and its writers."""
from __future__ import annotations

import struct
import time

import numpy as np
import pytest

from routerlab import fulltable as ft

# Target shares of a default-free IPv4 table (bgp.potaroo.net / CIDR report, 2024):
# the generator must land within 2 points of each.
TARGET = {24: 0.60, 23: 0.10, 22: 0.13, 21: 0.055, 20: 0.045, 19: 0.028, 16: 0.0135}


@pytest.fixture(scope="module")
def big() -> ft.FullTable:
    return ft.generate_table(200_000, seed=5)


def _overlapping(net: np.ndarray, plen: np.ndarray) -> int:
    """Prefixes that lie inside (or equal) another one of the table."""
    order = np.lexsort((plen, net))
    lo = net[order].astype(np.int64)
    hi = lo + (np.int64(1) << (32 - plen[order].astype(np.int64)))
    # sorted by start: a prefix overlaps an earlier one iff it starts before the
    # furthest end seen so far
    reach = np.maximum.accumulate(hi)
    return int(np.count_nonzero(lo[1:] < reach[:-1]))


def test_length_mix_within_two_points(big):
    share = {L: np.count_nonzero(big.plen == L) / len(big) for L in TARGET}
    for L, want in TARGET.items():
        assert abs(share[L] - want) <= 0.02, (L, share[L], want)
    assert big.plen.min() >= 8 and big.plen.max() == 24
    assert set(np.unique(big.plen).tolist()) >= set(range(12, 25))


def test_no_duplicates_or_overlaps(big):
    assert len(set(big.prefixes())) == len(big)
    assert _overlapping(big.net, big.plen) == 0
    # every prefix is a real network (no host bits), in public unicast /8s
    mask = (np.uint64(0xFFFFFFFF) << (32 - big.plen.astype(np.uint64))) & np.uint64(0xFFFFFFFF)
    assert np.all((big.net.astype(np.uint64) & ~mask & np.uint64(0xFFFFFFFF)) == 0)
    first = set((big.net >> 24).tolist())
    assert first <= set(ft.USABLE_SLASH8)
    assert not first & {0, 10, 100, 127, 169, 172, 192, 198, 203}


def test_overlap_check_sees_an_overlap():
    net = np.array([0x01000000, 0x01000100], dtype=np.uint32)  # 1.0.0.0/16 holds 1.0.1.0/24
    assert _overlapping(net, np.array([16, 24], dtype=np.uint8)) == 1
    assert _overlapping(net, np.array([24, 24], dtype=np.uint8)) == 0


def test_deterministic_for_a_seed():
    a, b, c = (ft.generate_table(20_000, seed=s) for s in (3, 3, 4))
    assert a.prefixes() == b.prefixes() and a.paths == b.paths
    assert np.array_equal(a.path_id, b.path_id)
    assert a.prefixes() != c.prefixes()
    ea, eb = ft.churn_trace(a, seed=9), ft.churn_trace(b, seed=9)
    assert ea == eb


def test_as_paths_and_origins_realistic(big):
    lens = np.array([len(big.as_path(i)) for i in range(0, len(big), 97)])
    assert 2.5 <= lens.mean() <= 4.5 and lens.min() >= 1 and lens.max() <= 11
    origins = [big.origin_as(i) for i in range(len(big))]
    per_origin = np.bincount(np.unique(origins, return_inverse=True)[1])
    assert 5_000 <= len(per_origin) <= 40_000       # ~1 origin per 13 prefixes
    assert per_origin.max() >= 50 * np.median(per_origin)  # heavy-tailed
    private = [a for a in origins[:5000] if 64512 <= a <= 65534 or a >= 4200000000]
    assert not private  # the lab's routers use private ASes: no false loops
    for path in big.paths[:2000]:
        head = [a for a in path if a != path[-1]]
        assert len(head) == len(set(head))  # transit ASes never repeat (a loop)
    row = next(big.rows())
    assert row[0] == big.prefixes()[0] and row[3] == row[2][-1]


def test_churn_trace_rate_bursts_and_order():
    t = ft.generate_table(10_000, seed=1)
    ev = ft.churn_trace(t, rate=100, duration=30, bursts=2, burst_size=300, seed=2)
    assert abs(len(ev) - (3000 + 600)) < 300
    times = [e.t for e in ev]
    assert times == sorted(times) and 0 <= times[0] and times[-1] <= 30
    assert max(np.unique(times, return_counts=True)[1]) >= 300  # a burst at one instant
    state: dict[int, bool] = {}
    for e in ev:  # per prefix: withdraw, announce, withdraw ...
        assert e.withdraw == (not state.get(e.index, False))
        state[e.index] = e.withdraw


def test_generates_a_million_fast():
    t0 = time.monotonic()
    t = ft.generate_table(1_000_000, seed=1)
    assert time.monotonic() - t0 < 20  # ~2 s unloaded; the shared machine is noisy
    assert len(t) == 1_000_000
    assert abs(np.count_nonzero(t.plen == 24) / 1e6 - 0.60) <= 0.02
    net, plen = ft.fib_routes(t)
    assert np.all(np.diff(net.astype(np.int64)) > 0)
    assert _overlapping(net, plen) == 0


def test_writers(tmp_path):
    t = ft.generate_table(3_000, seed=2)
    n = ft.write_exabgp(t, tmp_path / "feed", neighbor_as=65010, next_hop="10.1.0.2")
    lines = (tmp_path / "feed").read_text().splitlines()
    assert len(lines) == n
    seen = []
    for line in lines:
        head, nlri = line.split(" nlri ")
        assert head.startswith("announce attribute next-hop 10.1.0.2 origin igp as-path [ 65010 ")
        seen += nlri.split()
    assert sorted(seen) == sorted(t.prefixes())
    ft.write_mrt(t, tmp_path / "rib.mrt", peer_as=65010)
    data = (tmp_path / "rib.mrt").read_bytes()
    off, subtypes, got = 0, [], []
    while off < len(data):
        _, typ, sub, ln = struct.unpack_from("!IHHI", data, off)
        assert typ == 13
        body = data[off + 12: off + 12 + ln]
        if sub == 2:
            L = body[4]
            raw = body[5:5 + (L + 7) // 8] + bytes(4)
            got.append(f"{raw[0]}.{raw[1]}.{raw[2]}.{raw[3]}/{L}")
        subtypes.append(sub)
        off += 12 + ln
    assert subtypes[0] == 1 and subtypes.count(2) == len(t)
    assert got == t.prefixes()
