"""Exercise 5 — the BasicBlock's backward pass (reference solution).

Check it:   python -m resnet_np.grade tests/exercise_solutions/ex05_basic_block_backward.py

    out = relu2(r + s),   r = bn2(conv2(relu1(bn1(conv1(x))))),   s = x or downsample(x)
    dx  = (branch's backward of d_sum)  +  (shortcut's backward of d_sum),   d_sum = relu2's backward of dout
"""

import numpy as np  # noqa: F401


def basic_block_backward(block, dout):
    """The gradient of the block's input; block(x) has just run. Returns dx (N, C_in, H, W)."""
    d_sum = block.relu2.backward(dout)
    # The addition splits the gradient: both paths receive all of it.
    d_branch = d_sum
    d_shortcut = d_sum
    # The residual branch, last layer first.
    d_branch = block.bn2.backward(d_branch)
    d_branch = block.conv2.backward(d_branch)
    d_branch = block.relu1.backward(d_branch)
    d_branch = block.bn1.backward(d_branch)
    dx_branch = block.conv1.backward(d_branch)
    # The shortcut.
    if block.downsample is not None:
        dx_shortcut = block.downsample.backward(d_shortcut)
    else:
        dx_shortcut = d_shortcut
    # x fed both paths: its gradient is the sum.
    return dx_branch + dx_shortcut
