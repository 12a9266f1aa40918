"""Exercise 1 — im2col: every convolution window becomes one column (reference solution).

Check it:   python -m resnet_np.grade tests/exercise_solutions/ex01_im2col.py

See ``lessons/exercises/ex01_im2col.py`` for the task. Shapes:

    x      (N, C, H, W)
    cols   (N, C*KH*KW, OH*OW)
    OH = (H + 2*pad - KH) // stride + 1        OW = (W + 2*pad - KW) // stride + 1

    cols[n, c*KH*KW + i*KW + j, oh*OW + ow] = x_pad[n, c, oh*stride + i, ow*stride + j]

This solution loops over the OH*OW output positions: the clearest way. The
library (``resnet_np/layers/im2col.py``) loops over the KH*KW kernel offsets
instead — far fewer, bigger copies — and gives the same matrix.
"""

import numpy as np


def output_size(size, kernel, stride, pad):
    """How many positions a window of length `kernel` takes along an axis of length `size`."""
    return (size + 2 * pad - kernel) // stride + 1


def im2col(x, KH, KW, stride, pad):
    """(N, C, H, W) -> cols of shape (N, C*KH*KW, OH*OW)."""
    N, C, H, W = x.shape
    OH = output_size(H, KH, stride, pad)
    OW = output_size(W, KW, stride, pad)
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    cols = np.zeros((N, C * KH * KW, OH * OW), dtype=x.dtype)
    for oh in range(OH):
        for ow in range(OW):
            top, left = oh * stride, ow * stride
            window = x_pad[:, :, top:top + KH, left:left + KW]        # (N, C, KH, KW)
            cols[:, :, oh * OW + ow] = window.reshape(N, -1)          # rows in (c, i, j) order
    return cols
