"""Exercise 9 — the pre-activation block's backward pass (reference solution).

Check it:   python -m resnet_np.grade tests/exercise_solutions/ex09_preact_block_backward.py

    pre = relu1(bn1(x)),   out = conv2(relu2(bn2(conv1(pre)))) + s,   s = x or downsample(pre)

Nothing comes after the addition, so both paths receive dout itself. The
shortcut's gradient joins where its input was taken: at x for the identity
(dx = branch's dx + dout), at pre for the downsample (before relu1's and
bn1's backward).
"""

import numpy as np  # noqa: F401


def preact_block_backward(block, dout):
    """The gradient of the block's input; block(x) has just run. Returns dx (N, C_in, H, W)."""
    # The addition is the last operation: both paths receive all of dout.
    d_branch = dout
    d_shortcut = dout
    # The residual branch, last layer first.
    d_branch = block.conv2.backward(d_branch)
    d_branch = block.relu2.backward(d_branch)
    d_branch = block.bn2.backward(d_branch)
    d_pre = block.conv1.backward(d_branch)
    if block.downsample is not None:
        # pre fed conv1 AND the downsample: the two gradients add up at pre.
        d_pre = d_pre + block.downsample.backward(d_shortcut)
        return block.bn1.backward(block.relu1.backward(d_pre))
    # x fed bn1 and the identity shortcut: the two gradients add up at x.
    dx_branch = block.bn1.backward(block.relu1.backward(d_pre))
    return dx_branch + d_shortcut
