"""Exercise 12 — the Bottleneck block's backward pass with a projection shortcut (reference solution).

Check it:   python -m resnet_np.grade tests/exercise_solutions/ex12_bottleneck_backward.py

    projection:  dw[f, c] = sum dout[n, f] * x[n, c, ::s, ::s],   dx[:, :, ::s, ::s] = w^T dout, 0 elsewhere
    block:       dx = (branch's backward of d_sum) + (shortcut's backward of d_sum),   d_sum = relu3's backward
"""

import numpy as np


def projection_forward(x, w, stride):
    """Given: the projection's 1x1 convolution, no bias: x (N, C, H, W), w (F, C, 1, 1) -> (N, F, OH, OW)."""
    return np.einsum("fc,nchw->nfhw", w[:, :, 0, 0], x[:, :, ::stride, ::stride])


def projection_backward(dout, x, w, stride):
    """dout (N, F, OH, OW), the input x and weight w of projection_forward -> (dx, dw)."""
    x_read = x[:, :, ::stride, ::stride]
    dw = np.einsum("nfhw,nchw->fc", dout, x_read).reshape(w.shape)
    dx = np.zeros(x.shape)
    dx[:, :, ::stride, ::stride] = np.einsum("fc,nfhw->nchw", w[:, :, 0, 0], dout)
    return dx, dw


def bottleneck_backward(block, x, dout):
    """The gradient of the block's input, and of its projection's weight (None without a projection)."""
    d_sum = block.relu3.backward(dout)
    # The addition splits the gradient: both paths receive all of it.
    d_branch = d_sum
    d_shortcut = d_sum
    # The residual branch, last layer first.
    d_branch = block.bn3.backward(d_branch)
    d_branch = block.conv3.backward(d_branch)
    d_branch = block.relu2.backward(d_branch)
    d_branch = block.bn2.backward(d_branch)
    d_branch = block.conv2.backward(d_branch)
    d_branch = block.relu1.backward(d_branch)
    d_branch = block.bn1.backward(d_branch)
    dx_branch = block.conv1.backward(d_branch)
    if block.downsample is None:
        return dx_branch + d_shortcut, None
    # The projection: its batch norm, then its 1x1 convolution.
    conv, bn = block.downsample[0], block.downsample[1]
    d_proj = bn.backward(d_shortcut)
    dx_shortcut, dw_projection = projection_backward(d_proj, x, conv.weight.data, conv.stride[0])
    # x fed both paths: its gradient is the sum.
    return dx_branch + dx_shortcut, dw_projection
