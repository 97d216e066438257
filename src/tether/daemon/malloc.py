"""The daemon's allocator, told to keep what a big body's chunks churn through.

A big body reaches the daemon as ~256 KiB chunks (uvloop makes one ``bytes`` per socket read),
each freed as soon as it is spooled or sent. With glibc's defaults, a chunk that size is mapped
with ``mmap`` and unmapped when freed, or taken from the heap's top and given back (``brk``) when
freed: either way the kernel faults in and zeroes every page again, for every chunk. For a 100 MB
round trip through the socket that was 545 ``brk`` calls and 185 ms of the daemon's CPU.

With chunks below 4 MiB taken from the heap and the heap's top trimmed only past 4 MiB free, the
same pages serve chunk after chunk: 141 ms of CPU, and the round trip went from 306 to 258 ms
(interleaved with bare FastAPI's 254 ms; bench/README.md). The daemon keeps at most ~4 MiB more than before (its RSS after 100 MB round
trips: 55 MiB, was 54). glibc only; elsewhere (musl, macOS) nothing is changed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("tether.daemon")

M_TRIM_THRESHOLD = -1  # glibc's mallopt() parameters (malloc.h)
M_MMAP_THRESHOLD = -3
KEEP_BYTES = 4 << 20


def keep_chunks() -> bool:
    """Set glibc's mmap and trim thresholds to ``KEEP_BYTES``; True when it took."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    done = bool(mallopt(M_MMAP_THRESHOLD, KEEP_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP_BYTES))
    if not done:
        log.info("mallopt refused the thresholds: the allocator keeps its defaults")
    return done
