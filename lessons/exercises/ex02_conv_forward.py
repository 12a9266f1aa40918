# %% [markdown]
# # Exercise 2 — the convolution's forward pass as one matrix product
#
# A convolution layer (a cross-correlation, as in every deep-learning
# library: the kernel is NOT flipped) with $F$ filters computes
#
# $$
# \text{out}[n, f, o_h, o_w] = b[f] + \sum_{c,\,i,\,j} w[f, c, i, j]\;
#     x_{\text{pad}}[n, c, o_h s + i, o_w s + j]
# $$
#
# where $s$ is the stride. With im2col (exercise 1), every window is a
# column of `cols[n]`, with its values in the $(c, i, j)$ order.
#
# **Your task:** turn that sum into ONE matrix product (per batch of
# images), and write `conv_forward`. How must the weight be laid out so that
# its product with `cols[n]` gives every output value of image $n$ at once?
# Where does the bias go?
#
# * Check your work: run the last cell, or
#   `python -m resnet_np.grade lessons/exercises/ex02_conv_forward.py`.
# * Stuck? Hints one at a time: `--hint` (then `--hint 2`, ...) on the
#   command line, `grade.hint("ex02", 1)` in a notebook.
#
# ## Shapes
#
# | array | shape |
# | --- | --- |
# | `x` | $(N, C, H, W)$ |
# | `w` | $(F, C, K_H, K_W)$, PyTorch's layout (out_channels, in_channels, KH, KW) |
# | `b` | $(F,)$ |
# | `cols` | $(N, C K_H K_W, O_H O_W)$ |
# | `out` | $(N, F, O_H, O_W)$, with $O_H, O_W$ the output size of exercise 1 |
#
# `np.matmul` (the `@` operator) multiplies a $(F, K)$ matrix by a stack of
# $N$ matrices $(K, L)$ in one call. `im2col` below is the library's
# (arguments as tuples: kernel `(KH, KW)`, stride `(stride, stride)`,
# padding `(pad, pad)`); you may use your own from exercise 1 instead. The
# grader compares `conv_forward` with `resnet_np.layers.conv2d_naive` (one
# output position at a time, obviously right) for stride 1 and 2, with and
# without padding, square and non-square.

# %%
import numpy as np  # noqa: F401  (you may need it)

from resnet_np.layers import im2col


# %%
def conv_forward(x, w, b, stride, pad):
    """x (N, C, H, W), w (F, C, KH, KW), b (F,), ints stride and pad -> out (N, F, OH, OW)."""
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    # TODO:
    #   1. OH and OW (exercise 1);
    #   2. cols = im2col(x, (KH, KW), (stride, stride), (pad, pad))     (N, C*KH*KW, OH*OW)
    #   3. one matrix product with the weight laid out as you worked out,
    #      plus the bias of each filter (mind which axis is F);
    #   4. reshape to (N, F, OH, OW).
    raise NotImplementedError("TODO: conv_forward")


# %% [markdown]
# ## Check your work

# %%
if __name__ == "__main__":  # in Jupyter, or `python ex02_conv_forward.py`; not when the grader imports this file
    from resnet_np import grade

    grade.check_functions("ex02", globals())
