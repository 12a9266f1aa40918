# %% [markdown]
# # Exercise 9 — the pre-activation block's backward pass
#
# He et al.'s second ResNet paper ("Identity Mappings in Deep Residual
# Networks", 2016) moves batch norm and ReLU *into* the branch, before each
# convolution, and leaves nothing after the addition. That block trains
# networks of 1001 layers.
#
# **Your task: derive** how the gradient flows back through a
# `resnet_np.models.PreActBasicBlock`, and write `preact_block_backward`
# with the layers' own backward methods. Exercise 5 (the original block)
# comes first: the two differ in exactly the places that matter.
#
# * Check your work: run the last cell, or
#   `python -m resnet_np.grade lessons/exercises/ex09_preact_block_backward.py`.
# * Stuck? Hints one at a time: `--hint` (then `--hint 2`, ...) on the
#   command line, `grade.hint("ex09", 1)` in a notebook.
#
# ## The forward pass
#
# Calling `block(x)` runs
#
# $$
# \text{pre} = \operatorname{relu}_1(\operatorname{bn}_1(x)), \qquad
# \text{out} = \operatorname{conv}_2(\operatorname{relu}_2(\operatorname{bn}_2(\operatorname{conv}_1(\text{pre}))))
#     + s, \qquad
# s = \begin{cases} x & \text{no downsample} \\ \operatorname{downsample}(\text{pre}) & \text{otherwise} \end{cases}
# $$
#
# (the addition is `block.add`). `block.downsample` is `None` when the block
# keeps the shape, else a bare 1x1 convolution with stride 2 (no batch
# norm). Note where it reads its input: the *pre-activated* `pre`, not $x$,
# as in the paper's code.
#
# Every layer kept what its backward pass needs: `layer.backward(d)` takes
# the gradient of the layer's OUTPUT, returns the gradient of its INPUT and
# adds the gradients of its parameters into `param.grad`.
#
# ## What you derive
#
# Given `dout` $= \partial L / \partial\, \text{out}$, return
# $\partial L / \partial x$. Draw the graph, then answer:
#
# 1. What comes after the addition, and so what do the branch and the
#    shortcut receive?
# 2. In which order do the branch's layers run backward?
# 3. Where does the shortcut's gradient join the branch's: at $x$, or
#    somewhere else? It depends on the kind of shortcut: what does each one
#    read?
#
# Do not call `block.backward` (the library's answer: the grader switches it
# off).
#
# ## Shapes
#
# | array | shape |
# | --- | --- |
# | `x`, `dx`, `pre` and its gradient | $(N, C_{in}, H, W)$ |
# | `out`, `dout` | $(N, C_{out}, O_H, O_W)$ |
#
# The grader checks `dx` and every parameter's gradient against finite
# differences (float64, random `dout`) for a block with an identity
# shortcut and for one with a downsample (stride 2, more channels).

# %%
import numpy as np  # noqa: F401  (you may need it)


# %%
def preact_block_backward(block, dout):
    """The gradient of the block's input; block(x) has just run. Returns dx (N, C_in, H, W)."""
    # TODO: the chain rule through the block, with the layers' backward methods
    # (block.conv2, block.relu2, block.bn2, block.conv1, block.relu1, block.bn1,
    # block.downsample when it is not None), in the order your graph gives.
    raise NotImplementedError("TODO: preact_block_backward")


# %% [markdown]
# ## Check your work

# %%
if __name__ == "__main__":  # in Jupyter, or `python ex09_preact_block_backward.py`; not when the grader imports it
    from resnet_np import grade

    grade.check_functions("ex09", globals())
