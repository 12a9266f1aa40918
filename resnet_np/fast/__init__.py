"""The engine: the speed tricks, kept apart from the textbook layers of ``resnet_np.layers``.

Each layer in ``resnet_np/layers/`` computes its forward and backward pass
the plain way, as the lessons derive them. This package holds, one file per
trick, faster functions with the same signature and the same result (to
rounding) as the plain function each replaces:

* ``flat_im2col``: im2col on channels-first images, the batch's columns side by
  side, and at stride 1 a flat layout whose rows need no horizontal padding;
* ``conv``: the convolution in cache-sized chunks of images, and its backward
  through ``col2im``; ``transposed_conv``: the backward of a stride-1
  convolution as a convolution of dout (one im2col for dx and dW);
  ``row_taps``: a "same" convolution at stride 1 (ResNet's 3x3) as the
  products of the kernel rows with KW shifted copies of the images (taken
  as one product of the stacked rows, its row blocks added shifted),
  instead of one product over KH*KW copies;
  ``pointwise``: a 1x1 convolution at stride 1 as one product per image,
  straight on the (N, C, H, W) arrays (no copies);
* ``threads``: the images of a batch shared out among threads, one per core
  (helper threads started once, each part handed over through two locks);
* ``memory``: freed memory kept for the next step (glibc's ``mallopt``);
* ``batchnorm``: batch norm in fused passes; ``relu``: ReLU without a scalar
  operand, its mask as bits where a block keeps it; ``pooling``: max
  pooling's gradient routed straight to each window's winner;
* ``blocks``: inside a BasicBlock or Bottleneck, ReLU and the residual
  addition written over batch norm's output in one pass, and ReLU's and
  batch norm's backward over the convolution's gradient: fewer passes over
  memory, fewer arrays alive (the twin: the layers called one by one).

The layers choose with one ``if`` per pass, on one switch:

    resnet_np.use_fast(False)          (from now on, the plain layers)
    with resnet_np.use_fast(False):    (the plain layers inside the block only)
    RESNET_NP_FAST=0                   (environment: plain from the start)

The fast path is the default. Both paths keep the same things between a
layer's forward and backward pass, so a forward pass on one path can be
followed by the backward pass on the other. ``tests/test_fast.py`` proves
the two paths equal, layer by layer and network by network, in float64.

Importing resnet_np changes nothing outside the package. The two
process-wide settings that make a training loop faster — glibc keeping freed
memory, and BLAS at one thread while our threads share out the images —
are switched on by ``tuned()`` and restored when it ends (``fit``, the
command line and the benchmarks use it):

    with resnet_np.fast.tuned():
        for x, y in batches: ...
"""

import os
from contextlib import contextmanager

from . import memory, threads
from .threads import get_num_threads, set_num_threads


def _from_environment():
    value = os.environ.get("RESNET_NP_FAST", "1").strip()
    if value not in ("", "0", "1"):
        raise ValueError(f"RESNET_NP_FAST must be 0 (the plain layers) or 1 (the fast ones), got {value!r}")
    return value != "0"


_enabled = _from_environment()


def fast_enabled():
    """Whether the layers take the fast path (``use_fast`` and ``RESNET_NP_FAST`` set it)."""
    return _enabled


class use_fast:
    """Choose the fast path (``True``, the default) or the plain layers (``False``).

    A plain call switches from now on; used as a context manager, the
    previous choice comes back at the end of the block:

        resnet_np.use_fast(False)
        with resnet_np.use_fast(False): ...
    """

    def __init__(self, flag=True):
        global _enabled
        if not isinstance(flag, bool):
            raise TypeError(f"use_fast: flag must be True or False, got {flag!r}")
        self.previous = _enabled
        _enabled = flag

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        global _enabled
        _enabled = self.previous
        return False


_tuned_depth = 0


@contextmanager
def tuned():
    """Inside the block: glibc keeps freed memory, and BLAS runs on one thread beside our threads.

    Both are process-wide settings, faster for a training loop (see
    ``memory.py`` and ``threads.py``; BLAS is held at one thread only if the
    layers have several threads of their own, ``set_num_threads``); on
    leaving the outermost block,
    BLAS gets its threads back (threadpoolctl restores them) and malloc its
    default thresholds. Blocks nest. Without it the layers still use their
    threads, limiting BLAS for the duration of each call only.
    """
    global _tuned_depth
    if _tuned_depth == 0:
        memory.keep_freed_memory()
        threads.hold_blas_at_one_thread()
    _tuned_depth += 1
    try:
        yield
    finally:
        _tuned_depth -= 1
        if _tuned_depth == 0:
            threads.release_blas()
            memory.restore_defaults()


__all__ = ["fast_enabled", "use_fast", "tuned", "get_num_threads", "set_num_threads"]
