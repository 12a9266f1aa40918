# %% [markdown]
# # Exercise 3 — the convolution's backward pass, and col2im
#
# **Your task: derive** the gradients of a convolution layer with respect to
# its bias, its weight and its input, and write them as `col2im` and
# `conv_backward`. Do it before lesson 3, which works the answer out.
#
# * Check your work: run the last cell, or
#   `python -m resnet_np.grade lessons/exercises/ex03_conv_backward.py`.
# * Stuck? Hints one at a time: `--hint` (then `--hint 2`, ...) on the
#   command line, `grade.hint("ex03", 1)` in a notebook.
#
# ## The forward pass (given below, as in exercise 2)
#
# $$
# \text{cols}[n] = \text{im2col}(x)[n], \qquad
# W_{\text{mat}} = w \text{ reshaped to } (F,\; C K_H K_W), \qquad
# \text{out}[n] = W_{\text{mat}}\, \text{cols}[n] + b \mathbf{1}^\top
# $$
#
# with `out[n]` of shape $(F, O_H O_W)$, reshaped to $(F, O_H, O_W)$.
#
# ## What you derive
#
# You are given the upstream gradient `dout` $= \partial L / \partial\,
# \text{out}$ of shape $(N, F, O_H, O_W)$; view it as `dout[n]` of shape
# $(F, O_H O_W)$. Work out, on paper first:
#
# 1. $\partial L / \partial b$: which output values does $b[f]$ change?
# 2. $\partial L / \partial W_{\text{mat}}$: write one entry of
#    $\text{out}[n]$ as a sum over $k$ and differentiate
#    $L = \sum \text{dout} \cdot \text{out}$ by one weight. Which matrix
#    product collects all of them?
# 3. $\partial L / \partial\, \text{cols}[n]$, the same way.
# 4. $\partial L / \partial x$ from $\partial L / \partial\, \text{cols}$:
#    im2col COPIED each input pixel into every window that covers it (with
#    stride 1 and a 3x3 kernel an inner pixel has 9 copies). What does a
#    pixel's gradient have to do with the gradients of its copies? That is
#    `col2im`: it walks the windows as im2col did and brings each column
#    back to where it came from.
#
# ## Shapes
#
# | array | shape |
# | --- | --- |
# | `x`, `dx` | $(N, C, H, W)$ |
# | `w`, `dw` | $(F, C, K_H, K_W)$ |
# | `b`, `db` | $(F,)$ |
# | `dout` | $(N, F, O_H, O_W)$ |
# | `cols`, `dcols` | $(N, C K_H K_W, O_H O_W)$ |
#
# The grader checks `col2im` against `resnet_np.layers.col2im` and `dx`,
# `dw`, `db` against finite differences (float64, a random upstream
# gradient) with overlapping windows (stride 1), stride 2, padding and
# non-square shapes.

# %%
import numpy as np

from resnet_np.layers import im2col


# %%
def conv_forward(x, w, b, stride, pad):
    """Given: the forward pass. Returns out (N, F, OH, OW) and the cache for the backward pass."""
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    OH = (H + 2 * pad - KH) // stride + 1
    OW = (W + 2 * pad - KW) // stride + 1
    cols = im2col(x, (KH, KW), (stride, stride), (pad, pad))          # (N, C*KH*KW, OH*OW)
    out = w.reshape(F, -1) @ cols + b.reshape(1, F, 1)                # (N, F, OH*OW)
    cache = (x, w, b, stride, pad, cols)
    return out.reshape(N, F, OH, OW), cache


# %%
def col2im(dcols, x_shape, KH, KW, stride, pad):
    """The adjoint of im2col: dcols (N, C*KH*KW, OH*OW) -> dx (N, C, H, W)."""
    N, C, H, W = x_shape
    OH = (H + 2 * pad - KH) // stride + 1
    OW = (W + 2 * pad - KW) // stride + 1
    # TODO:
    #   1. dx_pad = zeros of the PADDED shape (N, C, H + 2*pad, W + 2*pad);
    #   2. for every output position (oh, ow): column oh*OW + ow of dcols,
    #      reshaped to (N, C, KH, KW), belongs to the window of dx_pad whose
    #      top-left corner is (oh*stride, ow*stride): bring it back there
    #      (what must happen where windows overlap?);
    #   3. return dx_pad without the padding.
    raise NotImplementedError("TODO: col2im")


# %%
def conv_backward(dout, cache):
    """dout (N, F, OH, OW) and the cache of conv_forward -> dx, dw, db."""
    x, w, b, stride, pad, cols = cache
    N, F, OH, OW = dout.shape
    _, _, KH, KW = w.shape
    # TODO: db, dw and dx from your derivation. Work with dout as a
    # (N, F, OH*OW) array; dx goes through your col2im.
    raise NotImplementedError("TODO: conv_backward")


# %% [markdown]
# ## Check your work

# %%
if __name__ == "__main__":  # in Jupyter, or `python ex03_conv_backward.py`; not when the grader imports this file
    from resnet_np import grade

    grade.check_functions("ex03", globals())
