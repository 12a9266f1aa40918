"""Exercise 2 — the convolution's forward pass as one matrix product (reference solution).

Check it:   python -m resnet_np.grade tests/exercise_solutions/ex02_conv_forward.py

    W_mat  = w.reshape(F, C*KH*KW)                      (F, C*KH*KW)
    out[n] = W_mat @ cols[n] + b[:, None]               (F, OH*OW)  ->  out (N, F, OH, OW)
"""

import numpy as np  # noqa: F401

from resnet_np.layers import im2col


def conv_forward(x, w, b, stride, pad):
    """x (N, C, H, W), w (F, C, KH, KW), b (F,), ints stride and pad -> out (N, F, OH, OW)."""
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    OH = (H + 2 * pad - KH) // stride + 1
    OW = (W + 2 * pad - KW) // stride + 1
    cols = im2col(x, (KH, KW), (stride, stride), (pad, pad))     # (N, C*KH*KW, OH*OW)
    w_mat = w.reshape(F, -1)                                     # (F, C*KH*KW)
    out = w_mat @ cols                                           # (N, F, OH*OW)
    out = out + b.reshape(1, F, 1)
    return out.reshape(N, F, OH, OW)
