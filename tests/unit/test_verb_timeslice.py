"""Time slicing: bulk work gives the hypervisor's loop back once its slice is spent."""
from __future__ import annotations

import asyncio

from verb.timeslice import in_slices


def test_in_slices_covers_every_item_in_order_and_lets_other_tasks_run():
    async def main(budget: float) -> tuple[list, int]:
        seen: list = []
        ticks = 0

        async def other() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        t = asyncio.get_running_loop().create_task(other())
        await asyncio.sleep(0)
        before = ticks
        await in_slices(list(range(10)), seen.extend, chunk=3, budget=budget)
        t.cancel()
        return seen, ticks - before

    seen, turns = asyncio.run(main(0.0))  # every chunk spends the slice: a turn after each
    assert seen == list(range(10)) and turns == 4
    seen, turns = asyncio.run(main(60.0))  # the slice outlasts the work: no turn given
    assert seen == list(range(10)) and turns == 0
