"""`verb.tasks.start_owned`: an object that keeps its own task is freed once the task ends,
even under the hypervisor's frozen garbage collection (`verb.hvproc.tune_gc`)."""
from __future__ import annotations

import asyncio
import gc
import weakref

from verb.tasks import start_owned


class Owner:
    """Keeps its task, as an Endpoint, a Session or a FIB watcher does."""

    def __init__(self) -> None:
        self.task: asyncio.Task | None = None
        self.buffers = [bytearray(1 << 10)]  # what such an owner holds (UPDATEs, a table)

    async def run(self) -> None:  # its frame holds the owner while it runs
        await asyncio.sleep(3600)


def test_a_cancelled_owner_is_freed_under_frozen_garbage_collection() -> None:
    async def main() -> tuple[bool, bool]:
        owner = Owner()
        start_owned(owner, "task", owner.run())
        await asyncio.sleep(0)
        gc.collect()
        gc.freeze()  # as tune_gc does after a full collection: never walked again
        try:
            assert owner.task is not None
            owner.task.cancel()
            for _ in range(3):
                await asyncio.sleep(0)
            let_go = owner.task is None
            ref = weakref.ref(owner)
            del owner
            return let_go, ref() is None
        finally:
            gc.unfreeze()
    assert asyncio.run(main()) == (True, True)


def test_a_newer_task_in_the_attribute_is_kept() -> None:
    async def main() -> bool:
        owner = Owner()
        first = start_owned(owner, "task", owner.run())
        second = start_owned(owner, "task", owner.run())
        first.cancel()
        for _ in range(3):
            await asyncio.sleep(0)
        kept = owner.task is second
        second.cancel()
        await asyncio.sleep(0)
        return kept
    assert asyncio.run(main())
