"""Exercise 3 — the convolution's backward pass, and col2im (reference solution).

Check it:   python -m resnet_np.grade tests/exercise_solutions/ex03_conv_backward.py

    db     = sum of dout over n, oh, ow                         (F,)
    dW_mat = sum_n dout[n] @ cols[n].T                          (F, C*KH*KW) -> w.shape
    dcols  = W_mat.T @ dout[n]                                  (N, C*KH*KW, OH*OW)
    dx     = col2im(dcols)                                      (N, C, H, W)
"""

import numpy as np

from resnet_np.layers import im2col


def conv_forward(x, w, b, stride, pad):
    """Given: the forward pass. Returns out (N, F, OH, OW) and the cache for the backward pass."""
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    OH = (H + 2 * pad - KH) // stride + 1
    OW = (W + 2 * pad - KW) // stride + 1
    cols = im2col(x, (KH, KW), (stride, stride), (pad, pad))          # (N, C*KH*KW, OH*OW)
    out = w.reshape(F, -1) @ cols + b.reshape(1, F, 1)                # (N, F, OH*OW)
    cache = (x, w, b, stride, pad, cols)
    return out.reshape(N, F, OH, OW), cache


def col2im(dcols, x_shape, KH, KW, stride, pad):
    """The adjoint of im2col: dcols (N, C*KH*KW, OH*OW) -> dx (N, C, H, W)."""
    N, C, H, W = x_shape
    OH = (H + 2 * pad - KH) // stride + 1
    OW = (W + 2 * pad - KW) // stride + 1
    dx_pad = np.zeros((N, C, H + 2 * pad, W + 2 * pad), dtype=dcols.dtype)
    for oh in range(OH):
        for ow in range(OW):
            top, left = oh * stride, ow * stride
            window = dcols[:, :, oh * OW + ow].reshape(N, C, KH, KW)
            dx_pad[:, :, top:top + KH, left:left + KW] += window   # windows overlap: add, never assign
    return dx_pad[:, :, pad:pad + H, pad:pad + W]


def conv_backward(dout, cache):
    """dout (N, F, OH, OW) and the cache of conv_forward -> dx, dw, db."""
    x, w, b, stride, pad, cols = cache
    N, F, OH, OW = dout.shape
    _, _, KH, KW = w.shape
    dout_mat = dout.reshape(N, F, OH * OW)                            # (N, F, OH*OW)
    db = dout_mat.sum(axis=(0, 2))                                    # (F,)
    dw = (dout_mat @ cols.transpose(0, 2, 1)).sum(axis=0)             # (F, C*KH*KW)
    dw = dw.reshape(w.shape)
    w_mat = w.reshape(F, -1)
    dcols = w_mat.T @ dout_mat                                        # (N, C*KH*KW, OH*OW)
    dx = col2im(dcols, x.shape, KH, KW, stride, pad)
    return dx, dw, db
