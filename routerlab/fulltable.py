"""A synthetic, deterministic full Internet routing table (about 1,000,000 IPv4 prefixes).

No download: the table is drawn from a seed with today's shape, as public table reports
(bgp.potaroo.net, the CIDR report, 2024) describe a default-free IPv4 table:

- prefix lengths: about 60% /24, then /22 (~13%), /23 (~10%), /21, /20, /19 ... down to a
  handful of /8s (`LENGTH_SHARES`);
- prefixes never overlap: every prefix is a distinct, aligned block (deliberate
  more-specifics of real tables are left out, so any overlap would be a generator bug);
  blocks are packed shortest first (an aligned packing: sizes are powers of two laid out in
  decreasing order, so each block starts on its own boundary) and the packed space is mapped
  /8 by /8 onto shuffled public unicast /8s, skipping 0/8, 10/8, 127/8, the /8s holding
  special-use blocks (100.64/10, 169.254/16, 172.16/12, 192.168/16, 198.18/15, the
  documentation /24s) and multicast/reserved space, so lab addresses never collide;
- origin ASes: heavy-tailed (a few ASes originate thousands of prefixes, most one or two),
  2-octet and 4-octet public AS numbers (never private ones, which the lab's routers use);
- AS paths (as the feeding neighbour would announce them, without its own AS): 1-9 ASes,
  mostly 2-4, through a tier-1/transit core, with origin prepending on some.

`churn_trace` makes updates and withdrawals at a rate with bursts; `write_exabgp`
and `write_mrt` give ExaBGP API commands and an MRT TABLE_DUMP_V2 file (`gobgp mrt inject
global FILE`); `fib_routes` gives the FIB-ready form (network, length as arrays).
Pure logic: stdlib and numpy only.
"""
from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Share of the table per prefix length (sums to 1): the /24 share is the rest.
LENGTH_SHARES: dict[int, float] = {
    8: 0.000004, 9: 0.000005, 10: 0.00001, 11: 0.00003, 12: 0.0001, 13: 0.00025,
    14: 0.0006, 15: 0.0012, 16: 0.0135, 17: 0.008, 18: 0.014, 19: 0.028, 20: 0.045,
    21: 0.055, 22: 0.13, 23: 0.1,
}
LENGTH_SHARES[24] = 1.0 - sum(LENGTH_SHARES.values())

# AS-path length (ASes after the feeding neighbour's own) -> share: mean about 3.2, as
# public collectors see behind one upstream.
PATH_LENGTH_SHARES: dict[int, float] = {1: 0.04, 2: 0.22, 3: 0.36, 4: 0.22, 5: 0.1,
                                        6: 0.04, 7: 0.015, 8: 0.004, 9: 0.001}

_EXCLUDED_SLASH8 = {0, 10, 100, 127, 169, 172, 192, 198, 203}
USABLE_SLASH8: tuple[int, ...] = tuple(a for a in range(1, 224) if a not in _EXCLUDED_SLASH8)


def _public_asns(rng: np.random.Generator, k: int) -> np.ndarray:
    """k distinct public AS numbers, about 55% 2-octet (1-64495), the rest 4-octet."""
    two = rng.choice(np.arange(1, 64496), size=int(k * 0.55), replace=False)
    four = rng.choice(np.arange(131072, 401309), size=k - len(two), replace=False)
    out = np.concatenate([two, four]).astype(np.uint32)
    rng.shuffle(out)
    return out


@dataclass
class FullTable:
    """The table as arrays (one row per prefix) plus the pool of distinct AS paths."""

    net: np.ndarray        # uint32 network address
    plen: np.ndarray       # uint8 prefix length
    path_id: np.ndarray    # int32 index into `paths`
    paths: list[tuple[int, ...]]
    seed: int
    _strs: list[str] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.net)

    def prefixes(self) -> list[str]:
        """Prefixes as 'a.b.c.d/len' strings (cached)."""
        if self._strs is None:
            n = self.net
            a, b, c, d = (n >> 24) & 255, (n >> 16) & 255, (n >> 8) & 255, n & 255
            self._strs = [f"{w}.{x}.{y}.{z}/{p}" for w, x, y, z, p in
                          zip(a.tolist(), b.tolist(), c.tolist(), d.tolist(),
                              self.plen.tolist())]
        return self._strs

    def as_path(self, i: int) -> tuple[int, ...]:
        return self.paths[int(self.path_id[i])]

    def origin_as(self, i: int) -> int:
        return self.as_path(i)[-1]

    def rows(self) -> Iterator[tuple[str, int, tuple[int, ...], int]]:
        """(prefix, prefix_len, as_path, origin_as) per prefix."""
        for p, L, pid in zip(self.prefixes(), self.plen.tolist(), self.path_id.tolist()):
            path = self.paths[pid]
            yield p, L, path, path[-1]

    def grouped(self) -> dict[tuple[int, ...], list[str]]:
        """Prefixes by AS path (one UPDATE/command per group, as a full feed is sent)."""
        strs = self.prefixes()
        order = np.argsort(self.path_id, kind="stable")
        pids = self.path_id[order]
        cuts = np.flatnonzero(np.diff(pids)) + 1
        out: dict[tuple[int, ...], list[str]] = {}
        for chunk in np.split(order, cuts):
            if len(chunk):
                # two path ids can spell the same path (both variants of a 1-AS path)
                out.setdefault(self.paths[int(self.path_id[chunk[0]])], []).extend(
                    strs[i] for i in chunk.tolist())
        return out


def _counts(n: int) -> dict[int, int]:
    """Prefixes per length for a table of n (largest-remainder rounding)."""
    raw = {L: s * n for L, s in LENGTH_SHARES.items()}
    out = {L: int(v) for L, v in raw.items()}
    rest = n - sum(out.values())
    for L in sorted(raw, key=lambda L: raw[L] - out[L], reverse=True)[:rest]:
        out[L] += 1
    return out


def generate_table(n: int = 1_000_000, seed: int = 1) -> FullTable:
    """A table of n distinct, non-overlapping prefixes with today's length mix."""
    rng = np.random.default_rng(seed)
    counts = _counts(n)
    plen = np.concatenate([np.full(c, L, dtype=np.uint8) for L, c in sorted(counts.items())])
    size = (np.uint64(1) << (32 - plen.astype(np.uint64)))
    # aligned packing, shortest first: each block starts at a multiple of its own size
    start = np.concatenate([[0], np.cumsum(size)[:-1]]).astype(np.uint64)
    total = int(start[-1] + size[-1]) if n else 0
    slash8 = list(USABLE_SLASH8)
    need = (total + (1 << 24) - 1) >> 24
    if need > len(slash8):
        raise ValueError(f"{n:,} prefixes of this mix need {need} /8s; {len(slash8)} usable")
    # spread the packed space: shuffle which real /8 each packed /8 becomes (no prefix
    # crosses a /8, so alignment and disjointness hold)
    real = np.array(rng.permutation(slash8)[:need], dtype=np.uint64)
    net = ((real[start >> np.uint64(24)] << np.uint64(24))
           | (start & np.uint64(0xFFFFFF))).astype(np.uint32)
    order = rng.permutation(n)
    net, plen = net[order], plen[order]

    # origins: heavy-tailed prefixes per origin (Zipf-like), ~ n/13 origin ASes (75k at 1M)
    n_orig = max(1, n // 13)
    origins = _public_asns(rng, n_orig)
    weights = 1.0 / np.arange(1, n_orig + 1) ** 0.9
    weights /= weights.sum()
    orig_idx = rng.choice(n_orig, size=n, p=weights)
    # each origin reached over 1-2 path variants (multi-homing)
    variant = (rng.random(n) < 0.3).astype(np.int64)
    key = orig_idx.astype(np.int64) * 2 + variant
    uniq, path_id = np.unique(key, return_inverse=True)
    core = _public_asns(np.random.default_rng(seed + 7), 2000)
    tier1, transit = core[:15], core[15:]
    lens = np.array(list(PATH_LENGTH_SHARES))
    lshare = np.array(list(PATH_LENGTH_SHARES.values()))
    plens = rng.choice(lens, size=len(uniq), p=lshare / lshare.sum())
    hops = rng.integers(0, len(transit), size=(len(uniq), 8))
    t1 = rng.integers(0, len(tier1), size=len(uniq))
    prepend = rng.random(len(uniq)) < 0.06
    t1l, hl, ol, pl = tier1.tolist(), hops.tolist(), origins.tolist(), plens.tolist()
    trl = transit.tolist()
    paths: list[tuple[int, ...]] = []
    for k, u in enumerate(uniq.tolist()):
        o = ol[u // 2]
        L = pl[k]
        mid = [t1l[t1[k]]] + [trl[h] for h in hl[k][:L - 2]] if L >= 2 else []
        path = tuple(dict.fromkeys(mid)) + (o,)  # no AS twice (would look like a loop)
        if prepend[k]:
            path = path + (o, o)
        paths.append(path)
    return FullTable(net, plen, path_id.astype(np.int32), paths, seed)


@dataclass(frozen=True)
class ChurnEvent:
    t: float        # seconds from the start of the trace
    index: int      # row of the table
    withdraw: bool  # True: withdrawn; False: announced again (with its path)


def churn_trace(table: FullTable, rate: float = 100.0, duration: float = 60.0,
                bursts: int = 3, burst_size: int = 500, seed: int = 2,
                churn_fraction: float = 0.02) -> list[ChurnEvent]:
    """Updates at `rate` per second (Poisson arrivals) for `duration` s, plus `bursts`
    bursts of `burst_size` events each at one instant (a session reset upstream).
    Events flip prefixes of a churn set (`churn_fraction` of the table): withdrawn, later
    announced again, in that order per prefix, so replaying the trace ends at the table."""
    rng = np.random.default_rng(seed)
    n_set = max(1, int(len(table) * churn_fraction))
    churn_set = rng.choice(len(table), size=n_set, replace=False).tolist()
    n_steady = int(rng.poisson(rate * duration))
    times = np.sort(rng.uniform(0, duration, size=n_steady)).tolist()
    burst_at = np.sort(rng.uniform(0.1 * duration, 0.9 * duration, size=bursts)).tolist()
    for t in burst_at:
        times.extend([t] * burst_size)
    times.sort()
    out: list[ChurnEvent] = []
    down: set[int] = set()
    order = churn_set
    for k, t in enumerate(times):
        i = order[k % len(order)]
        out.append(ChurnEvent(float(t), i, i not in down))
        down ^= {i}
    return out


def fib_routes(table: FullTable) -> tuple[np.ndarray, np.ndarray]:
    """The FIB-ready form: (network uint32, prefix length uint8), sorted by network."""
    order = np.argsort(table.net, kind="stable")
    return table.net[order], table.plen[order]


def write_exabgp(table: FullTable, path: Path, neighbor_as: int | None = None,
                 next_hop: str = "self", per_command: int = 500) -> int:
    """ExaBGP API commands announcing the table, grouped by AS path (`announce attribute
    ... nlri P1 P2 ...`), one per line; returns the number of commands."""
    n = 0
    with open(path, "w") as f:
        for asp, prefixes in table.grouped().items():
            full = ((neighbor_as,) if neighbor_as else ()) + asp
            head = (f"announce attribute next-hop {next_hop} origin igp "
                    f"as-path [ {' '.join(map(str, full))} ] nlri ")
            for k in range(0, len(prefixes), per_command):
                f.write(head + " ".join(prefixes[k:k + per_command]) + "\n")
                n += 1
    return n


def write_mrt(table: FullTable, path: Path, peer_ip: str = "10.1.0.2", peer_as: int = 65010,
              next_hop: str = "10.1.0.2", timestamp: int = 1_700_000_000,
              prepend_peer: bool = True) -> None:
    """An MRT TABLE_DUMP_V2 (RFC 6396) file of the table as learnt from one peer, for
    `gobgp mrt inject global FILE`: PEER_INDEX_TABLE then one RIB_IPV4_UNICAST per prefix.
    The peer's own AS leads every AS path unless `prepend_peer` is False (a GoBGP feeder
    injecting the file prepends its own AS when it advertises over eBGP)."""
    def rec(subtype: int, body: bytes) -> bytes:
        return struct.pack("!IHHI", timestamp, 13, subtype, len(body)) + body

    peer = ipaddress.IPv4Address(peer_ip).packed
    pit = (ipaddress.IPv4Address("10.255.0.254").packed + struct.pack("!H", 0)
           + struct.pack("!H", 1) + bytes([0x02]) + peer + peer + struct.pack("!I", peer_as))
    nh = ipaddress.IPv4Address(next_hop).packed
    attr_cache: dict[int, bytes] = {}
    with open(path, "wb") as f:
        f.write(rec(1, pit))
        for seq, (netv, L, pid) in enumerate(zip(table.net.tolist(), table.plen.tolist(),
                                                  table.path_id.tolist())):
            attrs = attr_cache.get(pid)
            if attrs is None:
                asp = ((peer_as,) if prepend_peer else ()) + table.paths[pid]
                seg = bytes([2, len(asp)]) + struct.pack(f"!{len(asp)}I", *asp)
                attrs = (bytes([0x40, 1, 1, 0])                     # ORIGIN igp
                         + bytes([0x50, 2]) + struct.pack("!H", len(seg)) + seg  # AS_PATH
                         + bytes([0x40, 3, 4]) + nh)                # NEXT_HOP
                attr_cache[pid] = attrs
            nb = (L + 7) // 8
            pfx = bytes([L]) + netv.to_bytes(4, "big")[:nb]
            entry = struct.pack("!HIH", 0, timestamp, len(attrs)) + attrs
            f.write(rec(2, struct.pack("!I", seq) + pfx + struct.pack("!H", 1) + entry))
