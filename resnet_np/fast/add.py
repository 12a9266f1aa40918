"""The residual addition on every core: the twin of ``layers/add.py``'s ``a + b``."""

from ..backend import get_array_module
from . import threads


def add(a, b):
    """a + b, a share of the images per thread (``threads.for_each_part``)."""
    xp = get_array_module(a)
    out = xp.empty_like(a)
    a1, b1, out1 = (v.reshape(-1) if v.ndim == 0 else v for v in (a, b, out))  # a scalar: one part
    threads.for_each_part(lambda n0, n1: xp.add(a1[n0:n1], b1[n0:n1], out=out1[n0:n1]),
                          len(a1), threads.min_images(a1), xp)
    return out
