"""The hypervisor process's own settings."""
from __future__ import annotations

import gc
import weakref


class _Node:
    me: object = None


def test_the_hypervisor_process_makes_full_collections_rare_and_walks_survivors_once():
    from verb import hvproc

    before = gc.get_threshold()
    cb = hvproc.tune_gc()
    try:
        assert gc.get_threshold() == (before[0], before[1], hvproc.FULL_GC_EVERY) and hvproc.FULL_GC_EVERY > before[2]
        survivor = [[1], {"a": 2}]
        assert gc.get_freeze_count() == 0
        gc.collect()  # a full collection: its survivors are frozen
        assert gc.get_freeze_count() > 0 and gc.is_tracked(survivor)
        node = _Node()
        node.me = node  # a young reference cycle, garbage: still collected
        gone = weakref.ref(node)
        del node
        gc.collect(0)
        assert gone() is None
    finally:
        gc.callbacks.remove(cb)
        gc.unfreeze()
        gc.set_threshold(*before)
