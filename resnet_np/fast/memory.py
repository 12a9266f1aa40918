"""Keeping freed memory for the next training step instead of handing it back to the kernel.

A training step allocates the same arrays every time — each layer's output,
its gradient, BatchNorm's centred input, ReLU's mask: a few hundred MB for
a ResNet-20 batch of 128 — and frees them when the step is over. By
default glibc's ``malloc`` gives large freed blocks back to the kernel
(``munmap``, or trimming the top of its heap), so the next step asks for
them again, and the kernel must zero every page before handing it out: on
this project's 2-core machine, zeroing pages took 13 % of the CPU time of a
ResNet-20 step (``perf``), and the step ran about 10 % faster once freed
memory was kept (benchmarks/results/bench_numpy.md says when it was
measured). PyTorch users get the same effect by loading jemalloc or
tcmalloc; here two standard ``mallopt`` settings do it:

* ``M_MMAP_THRESHOLD`` = 32 MB: blocks up to that size come from the heap,
  not from a fresh ``mmap`` of their own (whose pages die with ``free``);
* ``M_TRIM_THRESHOLD`` = 2 GB: the heap gives nothing back until 2 GB of it
  lies free at the top.

The price: the process keeps its peak memory after a step rather than
shrinking between steps — fine for a training process, and the peak itself
does not change. Only glibc (Linux) has ``mallopt``; elsewhere this does
nothing. It is a setting of the whole process, so importing resnet_np does
not make it: ``resnet_np.fast.tuned()`` does (``fit`` runs inside it), and
puts glibc's default thresholds back when it ends (``restore_defaults``).
Set ``RESNET_NP_KEEP_FREED_MEMORY=0`` to keep the C library's defaults
throughout.
"""

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1   # glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2 ** 20     # glibc's upper limit for this setting on 64-bit systems
TRIM_THRESHOLD = 2 ** 31 - 1      # mallopt takes an int
DEFAULT_THRESHOLD = 128 * 1024    # glibc's default for both (DEFAULT_MMAP_THRESHOLD_MIN, DEFAULT_TRIM_THRESHOLD)

_kept = False


def _mallopt():
    """glibc's ``mallopt``, or None (another C library, another system)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)          # the C library this process already runs on
        libc.gnu_get_libc_version         # glibc only: musl's mallopt is a stub
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt


def keep_freed_memory():
    """Tell glibc's malloc to keep freed blocks for reuse; return whether it took effect."""
    global _kept
    if _kept:
        return True
    mallopt = _mallopt()
    if mallopt is None or os.environ.get("RESNET_NP_KEEP_FREED_MEMORY", "1") == "0":
        return False
    # mallopt returns 1 on success, 0 on error
    _kept = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _kept


def restore_defaults():
    """Undo ``keep_freed_memory``: glibc's default thresholds again (its mmap threshold no longer slides up)."""
    global _kept
    if not _kept:
        return
    mallopt = _mallopt()
    mallopt(M_MMAP_THRESHOLD, DEFAULT_THRESHOLD)
    mallopt(M_TRIM_THRESHOLD, DEFAULT_THRESHOLD)
    _kept = False


def is_kept():
    """Whether ``keep_freed_memory`` is in effect."""
    return _kept
