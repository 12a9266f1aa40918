# %% [markdown]
# # Exercise 8 — the backward pass of a grouped convolution
#
# A grouped convolution (`Conv2d(..., groups=G)`: ResNeXt's "cardinality";
# $G = C$ is a depthwise convolution) splits the $C$ input channels and the
# $F$ filters into $G$ groups: group $g$'s $F/G$ filters see only group
# $g$'s $C/G$ input channels. It costs $G$ times fewer weights and
# operations than the full convolution.
#
# **Your task: derive** the gradients of a grouped convolution with respect
# to its bias, its weight and its input, and write `grouped_conv_backward`.
# Exercise 3 (the ordinary convolution) comes first.
#
# * Check your work: run the last cell, or
#   `python -m resnet_np.grade lessons/exercises/ex08_grouped_conv_backward.py`.
# * Stuck? Hints one at a time: `--hint` (then `--hint 2`, ...) on the
#   command line, `grade.hint("ex08", 1)` in a notebook.
#
# ## The forward pass (given below)
#
# With $C_g = C/G$ channels and $F_g = F/G$ filters per group, input
# channel $c$ belongs to group $\lfloor c / C_g \rfloor$ and filter $f$ to
# group $\lfloor f / F_g \rfloor$ (contiguous blocks, not interleaved):
#
# $$
# \text{out}[n, f, o_h, o_w] = b[f] + \sum_{c'=0}^{C_g - 1} \sum_{i,\,j}
#     w[f, c', i, j]\; x_{\text{pad}}[n,\, g C_g + c',\, o_h s + i,\, o_w s + j]
# $$
#
# where $g = \lfloor f / F_g \rfloor$ is the group of filter $f$ and $s$ the stride. The
# weight has PyTorch's shape $(F, C_g, K_H, K_W)$. The code below does
# it with im2col: the rows of `cols` come channel by channel, so group
# $g$'s rows are one contiguous block, and each group is one matrix product
# of its $(F_g, C_g K_H K_W)$ weight with its block of `cols`; the $G$
# products run as one batched `@`.
#
# ## What you derive
#
# Given `dout` $= \partial L / \partial\, \text{out}$ of shape
# $(N, F, O_H, O_W)$:
#
# 1. $\partial L / \partial b$ and $\partial L / \partial w$: which values of
#    `dout` and which rows of `cols` meet in the gradient of group $g$'s
#    weights?
# 2. $\partial L / \partial\, \text{cols}$: which filters does the gradient of
#    an input channel of group $g$ come from, and which not?
# 3. $\partial L / \partial x$ from it, with col2im (exercise 3; the
#    library's `col2im` is imported below).
#
# ## Shapes
#
# | array | shape |
# | --- | --- |
# | `x`, `dx` | $(N, C, H, W)$ |
# | `w`, `dw` | $(F, C_g, K_H, K_W)$ |
# | `b`, `db` | $(F,)$ |
# | `dout` | $(N, F, O_H, O_W)$ |
# | `cols` (in the cache) | $(N, G, C_g K_H K_W, O_H O_W)$ |
#
# The grader checks `dx`, `dw` and `db` against finite differences of the
# library's `Conv2d(..., groups=G)` (float64, a random upstream gradient)
# with 2 and 3 groups where $F_g \ne C_g$, and a depthwise convolution with
# stride 2.

# %%
import numpy as np  # noqa: F401  (you may need it)

from resnet_np.layers import col2im, im2col


# %%
def grouped_conv_forward(x, w, b, stride, pad, groups):
    """Given: the forward pass. Returns out (N, F, OH, OW) and the cache for the backward pass."""
    N, C, H, W = x.shape
    F, Cg, KH, KW = w.shape
    G, Fg = groups, F // groups
    OH = (H + 2 * pad - KH) // stride + 1
    OW = (W + 2 * pad - KW) // stride + 1
    cols = im2col(x, (KH, KW), (stride, stride), (pad, pad))          # (N, C*KH*KW, OH*OW)
    cols = cols.reshape(N, G, Cg * KH * KW, OH * OW)                  # group g's rows: one block
    w_mat = w.reshape(G, Fg, Cg * KH * KW)                            # group g's filters
    out = w_mat @ cols                                                # (N, G, Fg, OH*OW)
    out = out.reshape(N, F, OH, OW) + b.reshape(1, F, 1, 1)
    cache = (x, w, b, stride, pad, groups, cols)
    return out, cache


# %%
def grouped_conv_backward(dout, cache):
    """dout (N, F, OH, OW) and the cache of grouped_conv_forward -> dx, dw, db."""
    x, w, b, stride, pad, groups, cols = cache
    N, F, OH, OW = dout.shape
    _, Cg, KH, KW = w.shape
    G, Fg = groups, F // groups
    # TODO: db, dw and dx from your derivation. Hint for the layout: view dout
    # group by group, as the forward pass views out. dx goes through
    # col2im(dcols, x.shape, (KH, KW), (stride, stride), (pad, pad)) with dcols
    # of shape (N, C*KH*KW, OH*OW), rows in the order of im2col's.
    raise NotImplementedError("TODO: grouped_conv_backward")


# %% [markdown]
# ## Check your work

# %%
if __name__ == "__main__":  # in Jupyter, or `python ex08_grouped_conv_backward.py`; not when the grader imports it
    from resnet_np import grade

    grade.check_functions("ex08", globals())
