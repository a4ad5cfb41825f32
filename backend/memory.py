"""Allocator settings for the backend process: keep freed memory for the next big array.

The mesh core allocates and frees arrays of tens to hundreds of MB in quick succession. glibc's
malloc serves each such array with a fresh ``mmap`` and returns it with ``munmap`` on free, so
every one is paid again in page faults when first written (``/usr/bin/time -v`` on a
resolution-512 remesh on this project's 2-core VM: 1.2 s of system time beside 2 s of user
time). :func:`keep_freed_memory` makes malloc take big blocks from the heap and not give
freed memory back (one arena for all threads, so the job worker thread shares it), which
turns those faults into reuse from the second job on: the second remesh of ``teapot.obj`` at
512 in one process took 0.97 s against 1.41 s without it. The first job in a fresh process
still pays for growing the heap (no measurable gain there; ``python -m backend bench`` runs
each remesh in a fresh process without this setting, so its figures are the cold ones). :func:`release_freed_memory` hands
the freed memory back to the system; the job runner calls it after each job, so an idle
backend does not sit on its peak.

glibc only; elsewhere (musl, macOS, Windows) both are no-ops. ``MESHSMITH_KEEP_MEMORY=0``
turns the setting off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import sys

log = logging.getLogger(__name__)

# mallopt() parameters, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8

#: Freed memory below this much at the heap's top stays in the process (the largest value
#: mallopt takes: its argument is a C int).
_TRIM_THRESHOLD = 2**31 - 1


@functools.lru_cache(maxsize=1)
def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):  # not glibc
        return None


def keep_freed_memory() -> bool:
    """Make malloc keep and reuse freed memory (module doc); True if the settings took."""
    if os.environ.get("MESHSMITH_KEEP_MEMORY", "").strip() == "0":
        return False
    libc = _libc()
    if libc is None:
        return False
    ok = all(libc.mallopt(param, value) == 1 for param, value in (
        (_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)))
    log.debug("malloc keeps freed memory: %s", ok)
    return ok


def release_freed_memory() -> None:
    """Return the heap's free memory to the system (``malloc_trim``); a no-op off glibc."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
