"""The hypervisor process's own settings."""
from __future__ import annotations

import gc


def test_the_hypervisor_process_makes_full_collections_rare():
    from verb import hvproc

    before = gc.get_threshold()
    try:
        hvproc.tune_gc()
        assert gc.get_threshold() == (before[0], before[1], hvproc.FULL_GC_EVERY) and hvproc.FULL_GC_EVERY > before[2]
    finally:
        gc.set_threshold(*before)
