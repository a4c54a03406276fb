"""glibc's malloc, set to keep the memory a process frees for its next allocation of the same size.

Why: glibc's default *dynamic* mmap threshold rises to the size of the large blocks a process frees, so a process
that allocates the same large tensors call after call soon serves them from its heap. Two things undo that:

- **its trim threshold** (twice the mmap threshold, so a few MiB once the threshold has risen): a training step
  frees tens of MiB of activations at once, the free memory at the heap's top passes the threshold, glibc hands it
  back to the OS, and the next step page-faults it in again, zeroed. A FlowDetector training step at 32 features
  took ~1,200 page faults (1,544 features: ~3,100) and 15 % (7 %) more time than with the memory kept
  (docs/training_speed.md, "The allocator");
- **any malloc tunable set by the environment**, which turns the adaptation off: Dask's nanny starts every worker
  with ``MALLOC_TRIM_THRESHOLD_=65536`` (``distributed.nanny.pre-spawn-environ``), and every block over 128 KiB is
  then a fresh ``mmap``: scoring a series of 5,000 × 8 with a FlowDetector took ~35,000 page faults a call
  instead of 5,000, and ~1.7× the CPU time (docs/scale_out.md).

:func:`keep_freed_memory` sets the mmap threshold to glibc's largest and keeps up to :data:`TRIM_THRESHOLD` bytes
free at the heap's top, so the process re-uses the same pages call after call and step after step. Its peak memory
is the same; its resident memory stays near that peak between calls. It is process-wide and stays set (glibc has no
call that turns the dynamic threshold back on). The scale-out workers call it when they start, and every fit
(:func:`genad_fast.nn.training.fit_shards`) before its first step. ``GENAD_FAST_KEEP_FREED_MEMORY=0`` turns it
off: the allocator as it came.
"""
from __future__ import annotations

import ctypes
import os
import sys

#: glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest (HEAP_MAX_SIZE / 2 on 64-bit): blocks above it are mmapped
TRIM_THRESHOLD = 256 * 2**20  # free memory at the heap's top kept for the next allocation before it is returned
KEEP_FREED_MEMORY_ENV = "GENAD_FAST_KEEP_FREED_MEMORY"


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for the next allocation (module docstring). True when set (Linux with
    glibc and ``GENAD_FAST_KEEP_FREED_MEMORY`` not 0); calling it again sets the same values."""
    flag = os.environ.get(KEEP_FREED_MEMORY_ENV, "1").strip()
    if flag not in ("0", "1"):
        raise ValueError(f"{KEEP_FREED_MEMORY_ENV} must be 0 or 1, got {flag!r}")
    if flag == "0" or not sys.platform.startswith("linux") or not _glibc():
        return False  # musl, macOS, Windows: other allocators, other defaults; nothing to restore
    mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1


def _glibc() -> bool:
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (ValueError, OSError):  # the name is unknown to this C library
        return False
