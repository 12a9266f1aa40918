# %% [markdown]
# # Exercise 10 — max pooling's backward pass: overlapping windows and ties
#
# **Your task: derive** the gradient of a max-pooling layer with respect to
# its input and write it as `maxpool_backward`. ResNet's stem pools with a
# 3x3 window at stride 2 and padding 1: the windows overlap.
#
# * Check your work: run the last cell, or
#   `python -m resnet_np.grade lessons/exercises/ex10_maxpool_backward.py`.
# * Stuck? Hints one at a time: `--hint` (then `--hint 2`, ...) on the
#   command line, `grade.hint("ex10", 1)` in a notebook.
#
# ## The forward pass (given below)
#
# The input is padded with $-\infty$ (the padding never wins), then
#
# $$
# \text{out}[n, c, o_h, o_w] = \max_{0 \le i < K_H,\; 0 \le j < K_W}
# x_{\text{pad}}[n, c,\; o_h s + i,\; o_w s + j]
# $$
#
# for stride $s$. Each output value is the largest value of its window.
#
# ## What you derive
#
# You are given `dout` $= \partial L / \partial\, \text{out}$. Work out, on
# paper first:
#
# 1. A window's maximum, as a function of the window's values: what is its
#    derivative by the value that wins? By one that loses?
# 2. With a stride smaller than the window, one pixel can sit in several
#    windows, and win more than one of them. What is its gradient then?
# 3. A **tie**: two values of a window are equal and both are the maximum.
#    The max is not differentiable there; a library must pick one answer.
#    PyTorch (and `resnet_np.layers.MaxPool2d`) give the whole gradient of
#    the window to ONE element: the first maximum in row-major order
#    (the one `np.argmax` of the flattened window returns). Which answer
#    would give a tie's gradient twice?
# 4. The padding: which part of the padded gradient belongs to `x`?
#
# ## Shapes
#
# | array | shape |
# | --- | --- |
# | `x`, `dx` | $(N, C, H, W)$ |
# | `dout` | $(N, C, O_H, O_W)$ |
#
# The grader checks `dx` against finite differences (float64, a random
# upstream gradient) and against `resnet_np.layers.MaxPool2d` on inputs
# with ties (small integers), with overlapping windows, padding, a
# non-square kernel and non-overlapping windows.

# %%
import numpy as np


# %%
def maxpool_forward(x, KH, KW, stride, pad):
    """Given: max over each KH x KW window (stride, padding with -inf) -> out, cache."""
    N, C, H, W = x.shape
    OH = (H + 2 * pad - KH) // stride + 1
    OW = (W + 2 * pad - KW) // stride + 1
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=-np.inf)
    out = np.empty((N, C, OH, OW))
    for oh in range(OH):
        for ow in range(OW):
            out[:, :, oh, ow] = x_pad[:, :, oh * stride:oh * stride + KH, ow * stride:ow * stride + KW].max(axis=(2, 3))
    return out, (x, KH, KW, stride, pad)


# %%
def maxpool_backward(dout, cache):
    """dout (N, C, OH, OW) and the cache of maxpool_forward -> dx (N, C, H, W)."""
    x, KH, KW, stride, pad = cache
    # TODO: walk the windows as the forward pass does; find each window's winner (the first maximum,
    # row-major, for a tie) and give it that window's gradient.
    raise NotImplementedError("TODO: maxpool_backward")


# %% [markdown]
# ## Check your work

# %%
if __name__ == "__main__":  # in Jupyter, or `python ex10_maxpool_backward.py`; not when the grader imports this file
    from resnet_np import grade

    grade.check_functions("ex10", globals())
