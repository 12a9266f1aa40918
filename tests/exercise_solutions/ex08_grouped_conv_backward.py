"""Exercise 8 — the backward pass of a grouped convolution (reference solution).

Check it:   python -m resnet_np.grade tests/exercise_solutions/ex08_grouped_conv_backward.py

Group g is an ordinary convolution of its own block of cols with its own
(F/G, C/G*KH*KW) weight, so exercise 3's answer holds group by group:

    db             = dout summed over n, oh, ow                          (F,)
    dW_mat[g]      = sum_n dout[n, g] @ cols[n, g].T                     (G, F/G, C/G*KH*KW) -> w.shape
    dcols[n, g]    = W_mat[g].T @ dout[n, g]                             (N, G, C/G*KH*KW, OH*OW)
    dx             = col2im(dcols as (N, C*KH*KW, OH*OW))

The gradient of a channel of group g comes from group g's filters only:
the gradient of cols is block-diagonal in the groups, as the forward is.
"""

import numpy as np  # noqa: F401

from resnet_np.layers import col2im, im2col


def grouped_conv_forward(x, w, b, stride, pad, groups):
    """Given: the forward pass. Returns out (N, F, OH, OW) and the cache for the backward pass."""
    N, C, H, W = x.shape
    F, Cg, KH, KW = w.shape
    G, Fg = groups, F // groups
    OH = (H + 2 * pad - KH) // stride + 1
    OW = (W + 2 * pad - KW) // stride + 1
    cols = im2col(x, (KH, KW), (stride, stride), (pad, pad))          # (N, C*KH*KW, OH*OW)
    cols = cols.reshape(N, G, Cg * KH * KW, OH * OW)                  # group g's rows: one block
    w_mat = w.reshape(G, Fg, Cg * KH * KW)                            # group g's filters
    out = w_mat @ cols                                                # (N, G, Fg, OH*OW)
    out = out.reshape(N, F, OH, OW) + b.reshape(1, F, 1, 1)
    cache = (x, w, b, stride, pad, groups, cols)
    return out, cache


def grouped_conv_backward(dout, cache):
    """dout (N, F, OH, OW) and the cache of grouped_conv_forward -> dx, dw, db."""
    x, w, b, stride, pad, groups, cols = cache
    N, F, OH, OW = dout.shape
    _, Cg, KH, KW = w.shape
    G, Fg = groups, F // groups
    dout_g = dout.reshape(N, G, Fg, OH * OW)                          # group g's filters: one block
    db = dout.sum(axis=(0, 2, 3))                                     # (F,)
    dw = (dout_g @ cols.transpose(0, 1, 3, 2)).sum(axis=0)            # (G, Fg, Cg*KH*KW)
    dw = dw.reshape(w.shape)
    w_mat = w.reshape(G, Fg, Cg * KH * KW)
    dcols = w_mat.transpose(0, 2, 1) @ dout_g                         # (N, G, Cg*KH*KW, OH*OW)
    dcols = dcols.reshape(N, G * Cg * KH * KW, OH * OW)
    dx = col2im(dcols, x.shape, (KH, KW), (stride, stride), (pad, pad))
    return dx, dw, db
