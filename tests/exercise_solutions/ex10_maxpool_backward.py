"""Exercise 10 — max pooling's backward pass (reference solution).

Check it:   python -m resnet_np.grade tests/exercise_solutions/ex10_maxpool_backward.py

    dx[the first maximum of each window] += dout[window]      (then the padding cut off)
"""

import numpy as np


def maxpool_forward(x, KH, KW, stride, pad):
    """Given: max over each KH x KW window (stride, padding with -inf) -> out, cache."""
    N, C, H, W = x.shape
    OH = (H + 2 * pad - KH) // stride + 1
    OW = (W + 2 * pad - KW) // stride + 1
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=-np.inf)
    out = np.empty((N, C, OH, OW))
    for oh in range(OH):
        for ow in range(OW):
            out[:, :, oh, ow] = x_pad[:, :, oh * stride:oh * stride + KH, ow * stride:ow * stride + KW].max(axis=(2, 3))
    return out, (x, KH, KW, stride, pad)


def maxpool_backward(dout, cache):
    """dout (N, C, OH, OW) and the cache of maxpool_forward -> dx (N, C, H, W)."""
    x, KH, KW, stride, pad = cache
    N, C, H, W = x.shape
    _, _, OH, OW = dout.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=-np.inf)
    dx_pad = np.zeros(x_pad.shape)
    n, c = np.indices((N, C))
    for oh in range(OH):
        for ow in range(OW):
            top, left = oh * stride, ow * stride
            window = x_pad[:, :, top:top + KH, left:left + KW].reshape(N, C, KH * KW)
            k = window.argmax(axis=2)        # the first maximum in row-major order: PyTorch's rule for a tie
            i, j = np.divmod(k, KW)
            dx_pad[n, c, top + i, left + j] += dout[:, :, oh, ow]
    return dx_pad[:, :, pad:pad + H, pad:pad + W]
