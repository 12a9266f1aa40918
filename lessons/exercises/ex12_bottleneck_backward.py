# %% [markdown]
# # Exercise 12 — the Bottleneck block's backward pass, with a projection shortcut
#
# **Your task: derive** the gradient of the strided 1x1 convolution that
# projects the shortcut (`projection_backward`), then the chain rule through
# a whole `Bottleneck` block of ResNet-50 (`bottleneck_backward`).
#
# * Check your work: run the last cell, or
#   `python -m resnet_np.grade lessons/exercises/ex12_bottleneck_backward.py`.
# * Stuck? Hints one at a time: `--hint` (then `--hint 2`, ...) on the
#   command line, `grade.hint("ex12", 1)` in a notebook.
#
# ## The forward pass
#
# $$
# \text{out} = \text{relu}_3\big(r + s\big), \qquad
# r = \text{bn}_3(\text{conv}_3(\text{relu}_2(\text{bn}_2(\text{conv}_2(
# \text{relu}_1(\text{bn}_1(\text{conv}_1(x)))))))),
# $$
#
# with 1x1 `conv1` (reduce), 3x3 `conv2` (carrying the stride) and 1x1
# `conv3` (expand to 4 times the planes). The shortcut $s$ is $x$ itself
# when the shapes match, else the **projection** `block.downsample`: a 1x1
# convolution with the block's stride and no bias, then a batch norm,
# `Sequential(Conv2d(C, F, 1, stride=s, bias=False), BatchNorm2d(F))`:
#
# $$
# \text{proj}[n, f, o_h, o_w] = \sum_{c} w[f, c, 0, 0]\; x[n, c,\; o_h s,\; o_w s].
# $$
#
# ## What you derive
#
# 1. `projection_backward(dout, x, w, stride) -> (dx, dw)`, the projection
#    convolution's gradients, without `Conv2d`: differentiate the sum above
#    by one weight and by one input pixel. Which pixels of $x$ does a
#    stride-2 1x1 convolution never read, and what is their gradient?
# 2. `bottleneck_backward(block, x, dout) -> (dx, dw_projection)`: draw
#    the graph; every layer has its `backward` (`block.relu3`, `block.bn3`,
#    `block.conv3`, ..., `block.conv1`; the projection is
#    `block.downsample[0]` and its batch norm `block.downsample[1]`). The
#    grader switches off `block.backward` and the projection convolution's
#    `backward`: go through the projection with your `projection_backward`
#    (its weight: `block.downsample[0].weight.data`, its stride:
#    `block.downsample[0].stride[0]`) and return its weight gradient.
#    `block(x)` has just run, in training mode.
#
# ## Shapes
#
# | array | shape |
# | --- | --- |
# | `x`, `dx` | $(N, C, H, W)$ |
# | `w`, `dw` (projection) | $(F, C, 1, 1)$ |
# | `dout` (block) | $(N, F, O_H, O_W)$, $F$ = 4 x planes |
#
# The grader checks against finite differences (float64, a random upstream
# gradient): the projection alone (stride 2 on an odd-sized input, stride
# 1), the block with a projection shortcut (every parameter's gradient,
# too) and with the identity.

# %%
import numpy as np


# %%
def projection_forward(x, w, stride):
    """Given: the projection's 1x1 convolution, no bias: x (N, C, H, W), w (F, C, 1, 1) -> (N, F, OH, OW)."""
    return np.einsum("fc,nchw->nfhw", w[:, :, 0, 0], x[:, :, ::stride, ::stride])


# %%
def projection_backward(dout, x, w, stride):
    """dout (N, F, OH, OW), the input x and weight w of projection_forward -> (dx, dw)."""
    # TODO: the weight's gradient sums over the images and positions; the input's gradient lands
    # only on the pixels the strided convolution read.
    raise NotImplementedError("TODO: projection_backward")


# %%
def bottleneck_backward(block, x, dout):
    """The gradient of the block's input, and of its projection's weight (None without a projection)."""
    # TODO: the chain rule through the block, last layer first; the shortcut through downsample[1]'s
    # backward and your projection_backward.
    raise NotImplementedError("TODO: bottleneck_backward")


# %% [markdown]
# ## Check your work

# %%
if __name__ == "__main__":  # in Jupyter, or `python ex12_bottleneck_backward.py`; not when the grader imports it
    from resnet_np import grade

    grade.check_functions("ex12", globals())
