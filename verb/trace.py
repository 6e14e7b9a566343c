"""A replayable BGP update trace: a table of N prefixes learnt from two neighbours, and churn.

No public BGP trace ships in an installable package, so the trace is synthetic and seeded:
N /24 prefixes from 100.64.0.0/10 (shared address space: never real Internet routes),
each originated by one of a few hundred origin ASes and reached through both injecting
neighbours with AS paths of different lengths (so every implementation picks the same best
path: the shorter one; ties would be broken differently by FRR, BIRD and GoBGP). Paths come
from a pool of a few hundred shapes, so the table is announced in a few hundred grouped
commands, as a full-table BGP feed is.

Churn flips prefixes of a churn set between the two neighbours: the preferred neighbour
withdraws the prefix (the best path moves to the other) and later re-announces it.
"""
from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass, field

BASE = ipaddress.IPv4Network("100.64.0.0/10")


@dataclass(frozen=True)
class Churn:
    prefix: str
    withdraw: bool  # True: the preferred neighbour withdraws it; False: re-announces it


@dataclass
class Trace:
    """The table: per injector, prefix -> AS path (after the injector's own AS)."""

    prefixes: list[str]
    paths: dict[str, dict[str, tuple[int, ...]]]
    preferred: str  # the injector whose paths are shorter for churn prefixes
    other: str
    churn_set: list[str]
    stable: list[str]
    seed: int = 0
    groups: dict[str, dict[tuple[int, ...], list[str]]] = field(default_factory=dict)

    def grouped(self, injector: str) -> dict[tuple[int, ...], list[str]]:
        """Prefixes by AS path, for grouped announcements."""
        if injector not in self.groups:
            g: dict[tuple[int, ...], list[str]] = {}
            for p, path in self.paths[injector].items():
                g.setdefault(path, []).append(p)
            self.groups[injector] = g
        return self.groups[injector]

    def best(self, prefix: str, withdrawn: bool = False) -> str:
        """Which injector the best path goes through (given the preferred one withdrew)."""
        if withdrawn:
            return self.other
        a, b = self.paths[self.preferred][prefix], self.paths[self.other][prefix]
        return self.preferred if len(a) < len(b) else self.other

    def churn(self, n: int) -> list[Churn]:
        """n churn events cycling through the churn set: withdraw, later re-announce."""
        out, down = [], set()
        rng = random.Random(self.seed + 1)
        order = list(self.churn_set)
        rng.shuffle(order)
        i = 0
        while len(out) < n:
            p = order[i % len(order)]
            out.append(Churn(p, p not in down))
            down ^= {p}
            i += 1
        return out


def make(n: int = 10_000, *, churn_fraction: float = 0.1, seed: int = 1,
         injectors: tuple[str, str] = ("n1", "n2"), per_length: int = 100) -> Trace:
    """N prefixes; each neighbour's path is drawn from `per_length` paths of each length
    (1-6 ASes after the neighbour's own, the last one a 4-octet origin AS)."""
    rng = random.Random(seed)
    nets = BASE.subnets(new_prefix=24)
    prefixes = [str(next(nets)) for _ in range(n)]
    transit = list(range(64600, 64700))
    pool = {L: [tuple(rng.sample(transit, L - 1)) + (4200000000 + rng.randrange(1, 50_000),)
                for _ in range(per_length)] for L in range(1, 7)}
    a, b = injectors
    paths: dict[str, dict[str, tuple[int, ...]]] = {a: {}, b: {}}
    n_churn = int(n * churn_fraction)
    for i, p in enumerate(prefixes):
        la = rng.choice((1, 1, 2, 2, 2, 3, 3, 4))
        lb = min(6, la + rng.randrange(1, 3))  # strictly longer: no tie between the two
        if i >= n_churn and rng.random() < 0.5:
            la, lb = lb, la  # stable prefixes go either way; churn prefixes prefer `a`
        paths[a][p] = rng.choice(pool[la])
        paths[b][p] = rng.choice(pool[lb])
    return Trace(prefixes, paths, a, b, prefixes[:n_churn], prefixes[n_churn:], seed)


def from_table(table, churn_indices: list[int], *,
               injectors: tuple[str, str] = ("n1", "n2")) -> Trace:
    """A two-neighbour trace over a `routerlab.fulltable` table: every prefix is reached
    through both neighbours, through `b` one AS longer than through `a` (a prepend of the
    table path's first AS) for the churn prefixes and half of the others, the other way
    round for the rest, so the best path never ties."""
    a, b = injectors
    strs = table.prefixes()
    churn = set(churn_indices)
    pa: dict[str, tuple[int, ...]] = {}
    pb: dict[str, tuple[int, ...]] = {}
    paths = table.paths
    for i, (p, pid) in enumerate(zip(strs, table.path_id.tolist())):
        path = paths[pid]
        longer = (path[0],) + path
        if i in churn or i % 2 == 0:
            pa[p], pb[p] = path, longer
        else:
            pa[p], pb[p] = longer, path
    churn_set = [strs[i] for i in churn_indices]
    stable = [p for i, p in enumerate(strs) if i not in churn]
    return Trace(strs, {a: pa, b: pb}, a, b, churn_set, stable, table.seed)
