# %% [markdown]
# # Exercise 1 — im2col: every convolution window becomes one column
#
# A convolution slides a $K_H \times K_W$ window over a zero-padded image
# and, at every position, takes a dot product between the window and the
# kernel. `im2col` copies every window into a column of a matrix, so that
# the whole convolution becomes ONE matrix product (exercise 2).
#
# **Your task:** work out how many positions a window takes (`output_size`)
# and write `im2col` (the `TODO` cells below).
#
# * Check your work: run the last cell, or
#   `python -m resnet_np.grade lessons/exercises/ex01_im2col.py`.
# * Stuck? The grader gives hints one at a time: `--hint` (then `--hint 2`,
#   ...) on the command line, `grade.hint("ex01", 1)` in a notebook.
#
# ## Shapes
#
# | array | shape | what |
# | --- | --- | --- |
# | `x` | $(N, C, H, W)$ | $N$ images, $C$ channels, $H \times W$ pixels |
# | `x_pad` | $(N, C, H + 2p, W + 2p)$ | `x` with $p$ = `pad` zeros on each side of $H$ and $W$ |
# | `cols` | $(N, C K_H K_W, O_H O_W)$ | a row per (channel, kernel row, kernel column), a column per output position |
#
# ## The output size: yours to work out
#
# Along one axis of length `size`, padded by `pad` zeros on each side, a
# window of length `kernel` starts at 0, `stride`, `2*stride`, ... and must
# end inside the padded axis (a window that would stick out is dropped).
# How many windows is that? Try it by hand first: `size` 5, `kernel` 3,
# `stride` 1, `pad` 0 gives 3; `size` 7, `kernel` 3, `stride` 2, `pad` 1
# gives 4. Then write the general rule as one line of integer arithmetic.
#
# ## The layout (the specification)
#
# * Column `oh*OW + ow` of `cols[n]` is the window whose top-left corner is
#   at `(oh*stride, ow*stride)` in the padded image: the windows in reading
#   order, row by row.
# * Within a column, the window's values come in the order that
#   `window.reshape(N, -1)` gives a window of shape $(N, C, K_H, K_W)$:
#   channel first, then kernel row, then kernel column. That is also the
#   order in which a weight of shape $(F, C, K_H, K_W)$ flattens to
#   $(F, C K_H K_W)$.
#
# Example: `x` of shape (2, 3, 5, 4), a 3x3 kernel, stride 1, pad 1 gives
# `cols` of shape (2, 27, 20).
#
# The grader compares your functions with `resnet_np.layers.im2col` on
# square and non-square inputs and kernels, with and without padding, with
# stride 1, 2 and 3.

# %%
import numpy as np


# %%
def output_size(size, kernel, stride, pad):
    """How many positions a window of length `kernel` takes along an axis of length `size`.

    size, kernel, stride, pad: ints. Returns an int.
    """
    # TODO: one line of integer arithmetic (see "The output size" above).
    raise NotImplementedError("TODO: output_size")


# %%
def im2col(x, KH, KW, stride, pad):
    """(N, C, H, W) -> cols of shape (N, C*KH*KW, OH*OW); see "The layout" above."""
    N, C, H, W = x.shape
    OH = output_size(H, KH, stride, pad)
    OW = output_size(W, KW, stride, pad)
    # TODO:
    #   1. pad x with `pad` zeros on each side of H and W (np.pad);
    #   2. make cols = np.zeros((N, C*KH*KW, OH*OW), dtype=x.dtype);
    #   3. for every output position (oh, ow): cut the window of shape
    #      (N, C, KH, KW) that belongs there, flatten it to (N, C*KH*KW) and
    #      store it in its column.
    raise NotImplementedError("TODO: im2col")


# %% [markdown]
# ## Check your work
#
# This cell runs the grader on the functions above: one line per check,
# PASS or FAIL, and on FAIL what to look at.

# %%
if __name__ == "__main__":  # in Jupyter, or `python ex01_im2col.py`; not when the grader imports this file
    from resnet_np import grade

    grade.check_functions("ex01", globals())
