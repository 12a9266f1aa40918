"""Exercise 3 — the convolution's backward pass, and col2im.

Check your work:   python -m resnet_np.grade lessons/exercises/ex03_conv_backward.py
Read first:        lessons/03_conv_backward.py

The forward pass (given below, as in exercise 2)
------------------------------------------------
    cols[n] = im2col(x)[n]                        (C*KH*KW, OH*OW)
    W_mat   = w.reshape(F, C*KH*KW)
    out[n]  = W_mat @ cols[n] + b[:, None]         (F, OH*OW), reshaped to (F, OH, OW)

The backward pass
-----------------
Given the upstream gradient ``dout`` = dL/dout of shape (N, F, OH, OW),
viewed as dout[n] of shape (F, OH*OW):

    db     = sum of dout over n, oh, ow                         (F,)
    dW_mat = sum_n dout[n] @ cols[n].T                          (F, C*KH*KW) -> reshape to w.shape
    dcols  = W_mat.T @ dout[n]       (for every n)              (N, C*KH*KW, OH*OW)
    dx     = col2im(dcols)                                      (N, C, H, W)

Why col2im? im2col COPIED each input pixel into every window that covers
it (with stride 1 and a 3x3 kernel an inner pixel has 9 copies). ``dcols``
holds one gradient per copy; the pixel's gradient is the SUM over its
copies. col2im walks the windows exactly as im2col did and ADDS each
column back into the window it came from (``+=``, never ``=``), then cuts
the padding off:

    dx_pad[n, c, oh*stride + i, ow*stride + j] += dcols[n, c*KH*KW + i*KW + j, oh*OW + ow]
    dx = dx_pad[:, :, pad:pad + H, pad:pad + W]

Shapes
------
    x (N, C, H, W)   w (F, C, KH, KW)   b (F,)   dout (N, F, OH, OW)
    cols, dcols (N, C*KH*KW, OH*OW)     dx (N, C, H, W)   dw (F, C, KH, KW)   db (F,)
    OH = (H + 2*pad - KH) // stride + 1        OW = (W + 2*pad - KW) // stride + 1

The grader checks col2im against ``resnet_np.layers.col2im`` and dx, dw, db
against finite differences (float64, a random upstream gradient) with
overlapping windows (stride 1), stride 2, padding and non-square shapes.
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
    # TODO:
    #   1. dx_pad = zeros of the PADDED shape (N, C, H + 2*pad, W + 2*pad);
    #   2. for every output position (oh, ow): take column oh*OW + ow of dcols,
    #      reshape it to (N, C, KH, KW) and ADD it into the window of dx_pad
    #      whose top-left corner is (oh*stride, ow*stride);
    #   3. return dx_pad without the padding.
    raise NotImplementedError("TODO: col2im")


def conv_backward(dout, cache):
    """dout (N, F, OH, OW) and the cache of conv_forward -> dx, dw, db."""
    x, w, b, stride, pad, cols = cache
    N, F, OH, OW = dout.shape
    _, _, KH, KW = w.shape
    # TODO: db, dw and dx from the formulas in the module docstring. Work with
    # dout as a (N, F, OH*OW) array; dx goes through your col2im.
    raise NotImplementedError("TODO: conv_backward")
