"""Host memory of CPU runs: give freed tensor memory back to the operating system (glibc).

glibc serves an allocation from its heap, not from a fresh ``mmap``, once it is below the *dynamic* mmap threshold;
that threshold rises to the size of every large block freed (up to 32 MiB). On CPU every tensor is a ``malloc``, so
after the first weight matrix is freed, later ones of that size come from the heap, and a heap freed in the middle
is not returned: a process's RSS stays at its high-water mark. Measured in the 0.5B rehearsal (docs/scale.md): a
scratch ZeRO-3 build left each rank at 2.7 GiB for a 0.95 GiB partition, and stage 2 started from stage 1's 8.3 GiB
although every stage-1 tensor was freed. A fixed threshold (``mallopt(M_MMAP_THRESHOLD, 1 MiB)``, which also turns
the dynamic adjustment off) makes every tensor of 1 MiB or more its own mapping, unmapped when freed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

__all__ = ["MMAP_THRESHOLD", "return_freed_memory", "trim_heap"]

logger = logging.getLogger(__name__)

MMAP_THRESHOLD = 1 << 20  # bytes: allocations at least this large get their own mapping
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def trim_heap() -> bool:
    """Give the free pages of glibc's heaps back to the OS (``malloc_trim(0)``: smaller blocks, below the mmap
    threshold, that a finished stage freed); False where that is not possible."""
    libc = _libc()
    try:
        return bool(libc is not None and libc.malloc_trim(0))
    except AttributeError:
        return False


def return_freed_memory(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at ``threshold`` bytes in this process; False where that is not possible (another
    C library, or no ``mallopt``). Changes no result, only where large blocks come from."""
    libc = _libc()
    try:
        ok = bool(libc is not None and libc.mallopt(_M_MMAP_THRESHOLD, int(threshold)))
    except AttributeError:
        ok = False
    if not ok:
        logger.debug("mallopt(M_MMAP_THRESHOLD) is not available: freed CPU memory may stay with the process")
    return ok
