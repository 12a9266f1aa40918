"""Exercise 2 — the convolution's forward pass as one matrix product.

Check your work:   python -m resnet_np.grade lessons/exercises/ex02_conv_forward.py

The math
--------
A convolution layer (a cross-correlation, as in every deep-learning library:
the kernel is NOT flipped) with F filters computes

    out[n, f, oh, ow] = b[f] + sum_{c, i, j} w[f, c, i, j] * x_pad[n, c, oh*stride + i, ow*stride + j]

With im2col (exercise 1) every window is a column of ``cols[n]``, so the sum
over (c, i, j) is a row of the weight times a column of ``cols[n]``:

    W_mat  = w.reshape(F, C*KH*KW)                      (F, C*KH*KW)
    out[n] = W_mat @ cols[n] + b[:, None]               (F, OH*OW)

and ``out`` is finally reshaped to (N, F, OH, OW). ``np.matmul`` (the ``@``
operator) multiplies a (F, K) matrix by a stack of N (K, L) matrices in one
call: ``W_mat @ cols`` has shape (N, F, OH*OW).

Shapes
------
    x     (N, C, H, W)
    w     (F, C, KH, KW)         PyTorch's layout: (out_channels, in_channels, KH, KW)
    b     (F,)
    cols  (N, C*KH*KW, OH*OW)
    out   (N, F, OH, OW)
    OH = (H + 2*pad - KH) // stride + 1        OW = (W + 2*pad - KW) // stride + 1

``im2col`` below is the library's (arguments as tuples: kernel (KH, KW),
stride (stride, stride), padding (pad, pad)); you may use your own from
exercise 1 instead. The grader compares ``conv_forward`` with
``resnet_np.layers.conv2d_naive`` (one output position at a time, obviously
right) for stride 1 and 2, with and without padding, square and non-square.
"""

import numpy as np  # noqa: F401  (you may need it)

from resnet_np.layers import im2col


def conv_forward(x, w, b, stride, pad):
    """x (N, C, H, W), w (F, C, KH, KW), b (F,), ints stride and pad -> out (N, F, OH, OW)."""
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    # TODO:
    #   1. OH and OW from the formula above;
    #   2. cols = im2col(x, (KH, KW), (stride, stride), (pad, pad))     (N, C*KH*KW, OH*OW)
    #   3. one matrix product with the weight as a (F, C*KH*KW) matrix, plus
    #      the bias of each filter (mind which axis is F);
    #   4. reshape to (N, F, OH, OW).
    raise NotImplementedError("TODO: conv_forward")
