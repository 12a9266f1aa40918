"""Exercise 5 — the BasicBlock's backward pass: the chain rule through a skip connection.

Check your work:   python -m resnet_np.grade lessons/exercises/ex05_basic_block_backward.py

The forward pass
----------------
``block`` is a ``resnet_np.models.BasicBlock``. Calling ``block(x)`` runs

    h   = block.relu1(block.bn1(block.conv1(x)))          first conv, BN, ReLU
    r   = block.bn2(block.conv2(h))                       the residual branch r(x)
    s   = x   if block.downsample is None  else  block.downsample(x)    the shortcut
    out = block.relu2(r + s)                              (the addition is block.add)

``block.downsample`` is None when the block keeps the shape (stride 1, same
channels), else a module that maps x to the output's shape — here a 1x1
convolution with stride 2 followed by a batch norm, as in torchvision.

Every layer kept what its backward pass needs: ``layer.backward(d)`` takes the
gradient of the layer's OUTPUT and returns the gradient of its INPUT, and
adds the gradients of the layer's parameters into ``param.grad`` (for
example ``block.conv1.weight.grad``). Use them freely for the sub-steps.

Your task: the chain rule
-------------------------
Given dout = dL/dout, return dx = dL/dx. Two places need thought:

* the addition ``r + s`` SPLITS the gradient: d(r + s)/dr = d(r + s)/ds = 1,
  so both the branch and the shortcut receive the whole gradient arriving
  there (the gradient after relu2's backward);
* x fed BOTH paths, so dx is the SUM of the gradient coming back through the
  branch and the gradient coming back through the shortcut. With a
  downsample shortcut, the shortcut's gradient has the output's shape and
  must go back through ``block.downsample.backward`` first.

Layers run backward in the reverse order of the forward pass. Do not call
``block.backward`` (the library's answer: the grader switches it off) —
write the order yourself.

Shapes
------
    x, dx         (N, C_in, H, W)
    out, dout     (N, C_out, OH, OW)        OH = H // stride rounded up, OW likewise
    r, s, and their gradients: the output's shape

The grader checks dx and every parameter's gradient against finite
differences (float64, random dout) for a block with an identity shortcut
and for one with a downsample shortcut (stride 2, more channels).
"""

import numpy as np  # noqa: F401  (you may need it)


def basic_block_backward(block, dout):
    """The gradient of the block's input; block(x) has just run. Returns dx (N, C_in, H, W)."""
    # TODO:
    #   1. back through relu2;
    #   2. the split: the branch and the shortcut get the same gradient;
    #   3. the branch, last layer first: bn2, conv2, relu1, bn1, conv1;
    #   4. the shortcut: unchanged, or through block.downsample.backward;
    #   5. the sum.
    raise NotImplementedError("TODO: basic_block_backward")
