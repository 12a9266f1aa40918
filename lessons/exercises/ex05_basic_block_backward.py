# %% [markdown]
# # Exercise 5 — the BasicBlock's backward pass: the chain rule through a skip connection
#
# **Your task: derive** how the gradient flows back through a ResNet
# BasicBlock, and write `basic_block_backward` with the layers' own
# backward methods.
#
# * Check your work: run the last cell, or
#   `python -m resnet_np.grade lessons/exercises/ex05_basic_block_backward.py`.
# * Stuck? Hints one at a time: `--hint` (then `--hint 2`, ...) on the
#   command line, `grade.hint("ex05", 1)` in a notebook.
#
# ## The forward pass
#
# `block` is a `resnet_np.models.BasicBlock`. Calling `block(x)` runs
#
# $$
# h = \operatorname{relu}_1(\operatorname{bn}_1(\operatorname{conv}_1(x))), \qquad
# r = \operatorname{bn}_2(\operatorname{conv}_2(h)), \qquad
# s = \begin{cases} x & \text{no downsample} \\ \operatorname{downsample}(x) & \text{otherwise} \end{cases}, \qquad
# \text{out} = \operatorname{relu}_2(r + s)
# $$
#
# (the addition is `block.add`). `block.downsample` is `None` when the block
# keeps the shape (stride 1, same channels), else a module that maps $x$ to
# the output's shape: here a 1x1 convolution with stride 2 followed by a
# batch norm, as in torchvision.
#
# Every layer kept what its backward pass needs: `layer.backward(d)` takes
# the gradient of the layer's OUTPUT and returns the gradient of its INPUT,
# and adds the gradients of the layer's parameters into `param.grad` (for
# example `block.conv1.weight.grad`). Use them freely for the sub-steps.
#
# ## What you derive
#
# Given `dout` $= \partial L / \partial\, \text{out}$, return
# $\partial L / \partial x$. Draw the forward pass as a graph first, then
# answer:
#
# 1. What does the addition $r + s$ do to the gradient arriving at it? What
#    do the branch and the shortcut each receive?
# 2. $x$ feeds both paths. How do the gradients coming back along the two
#    paths combine into $\partial L / \partial x$?
# 3. In which order do the layers of each path run backward, and where does
#    `relu2` come in?
#
# Do not call `block.backward` (the library's answer: the grader switches it
# off); write the order yourself.
#
# ## Shapes
#
# | array | shape |
# | --- | --- |
# | `x`, `dx` | $(N, C_{in}, H, W)$ |
# | `out`, `dout`, $r$, $s$ and their gradients | $(N, C_{out}, O_H, O_W)$ |
#
# The grader checks `dx` and every parameter's gradient against finite
# differences (float64, random `dout`) for a block with an identity
# shortcut and for one with a downsample shortcut (stride 2, more channels).

# %%
import numpy as np  # noqa: F401  (you may need it)


# %%
def basic_block_backward(block, dout):
    """The gradient of the block's input; block(x) has just run. Returns dx (N, C_in, H, W)."""
    # TODO: the chain rule through the block, with the layers' backward methods
    # (block.relu2, block.bn2, block.conv2, block.relu1, block.bn1, block.conv1,
    # block.downsample when it is not None), in the order your graph gives.
    raise NotImplementedError("TODO: basic_block_backward")


# %% [markdown]
# ## Check your work

# %%
if __name__ == "__main__":  # in Jupyter, or `python ex05_basic_block_backward.py`; not when the grader imports it
    from resnet_np import grade

    grade.check_functions("ex05", globals())
