"""Heap memory freed while a version loads, handed back to the system.

Loading a large version frees more than it keeps: opening Gemma's onnxruntime session and parsing
its ``tokenizer.json`` (the checkpoint's 33 MB form) left 579 MB resident, of which glibc's
allocator held about 200 MB freed but not returned; ``malloc_trim`` gave it back in 13 ms (380 MB
resident). With the 13 MB form the import now writes: 413 MB, 376 MB after the trim. A Lambda
function is sized by its memory, and a warm environment's later allocations (KV caches) start
from the lower figure. ctypes, not a package: this is one libc call.
"""

from __future__ import annotations

import ctypes
from functools import cache
from typing import Any


@cache
def _libc() -> Any:
    """The process's own C library (glibc on Lambda's Amazon Linux: no search, no subprocess),
    or None where it has no ``malloc_trim``."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") else None


def release_freed_memory() -> bool:
    """Return freed heap pages to the system; False where that cannot be done here."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
