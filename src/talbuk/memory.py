"""How the C allocator hands memory back, tuned once per process for whole-population runs.

glibc's ``malloc`` serves a request above its *mmap threshold* with a fresh mapping that
``free`` returns to the system at once; smaller requests come from the heap, whose free space
is reused but rarely returned. The threshold starts at 128 KiB and, by default, rises to the
size of the largest mapping freed so far (up to 32 MiB). A simulation frees arrays of one
to tens of megabytes every month (per-household and per-cell temporaries, numba's work
arrays), so after the first month such arrays live on the heap, and the heap's free pieces,
split and scattered between live arrays, stay resident: at scale 10 (2 million agents) the
resident memory of the run stood 184 bytes per agent above the interpreter's against 97 bytes
of state, and 128 with the threshold fixed at 1 MiB (``docs/performance.md``, "Memory").

:func:`tune_malloc` fixes the threshold (which also stops its adjustment) at 1 MiB. Arrays
below that are small enough for the heap to reuse well; the larger ones cost one mapping
per allocation, which the kernels amortise over a million elements or more (a module that
needs such an array every month keeps it instead: the information module's household
arrays). Fixing the threshold also freezes the heap's padding at 128 KiB, and then the heap
shrinks and grows again many times a month: at 20,000 agents a month took 4.4 ms instead of
1.5-1.8 (2 threads). So the padding (``M_TOP_PAD``, memory taken beyond each request when
the heap grows, and left when it shrinks) is set to 16 MiB, which brought it back to 1.7.
Nothing is done when the environment already sets ``MALLOC_MMAP_THRESHOLD_`` (glibc reads
that at start-up), when ``TALBUK_MALLOC=default`` asks for glibc's behaviour, or off glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

#: glibc's ``mallopt`` parameter number of ``M_MMAP_THRESHOLD`` (malloc.h)
M_MMAP_THRESHOLD = -3
#: glibc's ``mallopt`` parameter number of ``M_TOP_PAD`` (malloc.h)
M_TOP_PAD = -2
#: requests of at least this many bytes get their own mapping (set by hand; see above)
MMAP_THRESHOLD_BYTES = 1 << 20
#: padding of the heap when it grows or shrinks (set by hand; see above)
TOP_PAD_BYTES = 16 << 20

_done: bool | None = None


def tune_malloc() -> bool:
    """Fix glibc's mmap threshold at :data:`MMAP_THRESHOLD_BYTES` and its heap padding at
    :data:`TOP_PAD_BYTES`, once per process.

    Returns whether both are set by talbuk. Results do not depend on it: only where
    freed memory goes.
    """
    global _done
    if _done is not None:
        return _done
    _done = False
    if (not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ
            or os.environ.get("TALBUK_MALLOC", "") == "default"):
        return _done
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return _done
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(M_TOP_PAD, TOP_PAD_BYTES))
    return _done
