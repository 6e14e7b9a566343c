"""Cooperative time slicing on the hypervisor's one event loop.

Every session, FIB watcher and KEEPALIVE timer of the hypervisor shares one asyncio loop,
so bulk work (dropping a replica's full table of votes, re-reading a replica's FIB, deciding
keys again after a mode switch) must give the loop back often; but each yield costs a whole
loop pass (every other session's turn), so yielding after a fixed small count of items made
a 1M-prefix job take hours while the loop was busy. A `TimeSlice` yields once its slice of
work time is spent: bulk work gets about `budget` seconds per loop pass.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
SLICE_S = 0.05  # work time per loop pass: well under the sessions' KEEPALIVE intervals


class TimeSlice:
    """Yields to the loop when `budget` seconds of work have passed since the last yield."""

    def __init__(self, budget: float = SLICE_S):
        self.budget = budget
        self._since = time.monotonic()

    async def pause(self) -> None:
        if time.monotonic() - self._since >= self.budget:
            await asyncio.sleep(0)
            self._since = time.monotonic()


async def in_slices(items: Sequence[T], fn: Callable[[Sequence[T]], None], chunk: int = 1000,
                    budget: float = SLICE_S) -> None:
    """`fn` over `items` a chunk at a time, giving the loop back whenever a slice is spent."""
    ts = TimeSlice(budget)
    for i in range(0, len(items), chunk):
        fn(items[i:i + chunk])
        await ts.pause()
