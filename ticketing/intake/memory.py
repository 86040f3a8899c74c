"""Memory settings for long intake runs (replay, serve).

glibc's malloc raises its mmap threshold each time a large block is freed, so after the first 100 KB attachment
every later one comes from the heap, which fragments and never shrinks: a replay's memory then creeps upwards
with the number of messages. A fixed threshold keeps blocks of 128 KB and more in their own mappings, returned to
the system when freed, and peak memory depends on the batch, not on the size of the input (bench/replay.py).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3
LARGE_BLOCK = 128 * 1024


def keep_large_blocks_out_of_the_heap() -> bool:
    """Fix glibc's mmap threshold; a no-op (False) where the C library is not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        return bool(libc.mallopt(M_MMAP_THRESHOLD, LARGE_BLOCK))
    except (OSError, AttributeError):
        log.debug('mallopt is not available; memory use may grow with long runs')
        return False
