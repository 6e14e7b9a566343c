"""Tasks kept by the object that started them, and let go of once they end.

The hypervisor freezes what survives a full collection (`verb.hvproc.tune_gc`), and a
frozen reference cycle is never freed. An object that keeps its own task makes one as soon
as the task ends with an exception: a cancelled task keeps its CancelledError, whose
traceback holds the task's frames and so the object (a FIB watcher's full table, a
session's buffers, an endpoint's decoded UPDATEs). Measured: each replica recovery at 1M
prefixes left its replaced FIB watcher's table behind (the hypervisor grew 4.4 -> 7.6 GB
over five recoveries), and at 200k a replaced replica's endpoint kept its cancelled tasks
with 439 decoded UPDATEs. `start_owned` keeps the task in the owner's attribute while it
runs and clears the attribute once it has ended; refcounting then frees both.
"""
from __future__ import annotations

import asyncio
import functools
from collections.abc import Coroutine
from typing import Any


def start_owned(owner: object, attr: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task:
    """Run `coro` as a task held in `owner.attr` until it ends (then the attribute is None,
    unless a newer task took its place)."""
    task = asyncio.get_running_loop().create_task(coro)
    setattr(owner, attr, task)
    task.add_done_callback(functools.partial(_let_go, owner, attr))
    return task


def _let_go(owner: object, attr: str, task: asyncio.Task) -> None:
    if getattr(owner, attr, None) is task:
        setattr(owner, attr, None)
