"""Exercise 1 — im2col: every convolution window becomes one column.

Check your work:   python -m resnet_np.grade lessons/exercises/ex01_im2col.py

The idea
--------
A convolution slides a KH x KW window over a zero-padded image and, at every
position, takes a dot product between the window and the kernel. ``im2col``
copies every window into a column of a matrix, so that the whole convolution
becomes ONE matrix product (exercise 2).

Shapes
------
    x      (N, C, H, W)          N images, C channels, H x W pixels
    x_pad  (N, C, H + 2*pad, W + 2*pad)   x with `pad` zeros on each side of H and W
    cols   (N, C*KH*KW, OH*OW)   one row per (channel, kernel row, kernel column),
                                 one column per output position

The number of window positions along one axis (the output size) is

    OH = (H + 2*pad - KH) // stride + 1        OW = (W + 2*pad - KW) // stride + 1

(the first window starts at 0, the last one must end inside the padded image;
``//`` rounds down, so a window that would stick out is dropped).

The layout
----------
Column ``oh*OW + ow`` of ``cols[n]`` is the window whose top-left corner is at
(oh*stride, ow*stride) in the padded image, flattened in the order (c, i, j):

    cols[n, c*KH*KW + i*KW + j, oh*OW + ow] = x_pad[n, c, oh*stride + i, ow*stride + j]

That is the order in which a weight of shape (F, C, KH, KW) flattens to
(F, C*KH*KW), and ``window.reshape(N, -1)`` of a window of shape
(N, C, KH, KW) gives exactly this order.

Example: x of shape (2, 3, 5, 4), a 3x3 kernel, stride 1, pad 1 gives
OH = 5, OW = 4 and cols of shape (2, 27, 20).

Write the two functions below (the TODO blocks). The grader compares them
with ``resnet_np.layers.im2col`` on square and non-square inputs and
kernels, with and without padding, with stride 1 and 2.
"""

import numpy as np


def output_size(size, kernel, stride, pad):
    """How many positions a window of length `kernel` takes along an axis of length `size`.

    size, kernel, stride, pad: ints. Returns an int.
    """
    # TODO: one line, from the formula for OH above.
    raise NotImplementedError("TODO: output_size")


def im2col(x, KH, KW, stride, pad):
    """(N, C, H, W) -> cols of shape (N, C*KH*KW, OH*OW); see the module docstring."""
    N, C, H, W = x.shape
    OH = output_size(H, KH, stride, pad)
    OW = output_size(W, KW, stride, pad)
    # TODO:
    #   1. pad x with `pad` zeros on each side of H and W (np.pad, pad width
    #      ((0, 0), (0, 0), (pad, pad), (pad, pad)));
    #   2. make cols = np.zeros((N, C*KH*KW, OH*OW), dtype=x.dtype);
    #   3. for every output position (oh, ow): cut the window of shape
    #      (N, C, KH, KW) whose top-left corner is (oh*stride, ow*stride),
    #      flatten it to (N, C*KH*KW) and store it in column oh*OW + ow.
    raise NotImplementedError("TODO: im2col")
