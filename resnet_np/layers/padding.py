"""Padding an image by copying its own pixels, and the backward of that copy (``Conv2d``'s ``padding_mode``).

Zero padding (lesson 02) surrounds the image with zeros. PyTorch's other
modes fill the border from the image itself: with the input's rows counted
from 0 to H-1 and a padded row i that lies k = i - top rows below the first,
the row it copies is s(k):

    s_reflect(k)   = -k (k < 0),   k,   2*(H-1) - k (k > H-1)      (mirror, edge not repeated: d c b | a b c d | c b a)
    s_replicate(k) = min(max(k, 0), H-1)                           (edge repeated: a a a | a b c d | d d d)
    s_circular(k)  = k mod H                                       (wrap around: b c d | a b c d | a b c)

and the same along the columns. A padded image is a gather (the leading
axes, N and C, go along):

    out[n, c, i, j] = x[n, c, s(i - top), s(j - left)]          (N, C, H + top + bottom, W + left + right)

Its backward is the adjoint of that gather: every padded pixel hands its
gradient back to the pixel it copied, so a border pixel collects the
gradients of itself and of all its copies:

    dx[n, c, a, b] = sum over (i, j) with s(i - top) = a and s(j - left) = b of dout[n, c, i, j]

Rows and columns are padded independently, so the backward folds the
columns back first, then the rows: two loops over the few border lines,
one slice addition each (no scatter: the same sums in the same order on
every run).
"""

from ..backend import get_array_module

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def source_index(k, size, mode):
    """s(k): the input row (or column) that padded position k (counted from the first input row) copies."""
    if mode == "reflect":
        return -k if k < 0 else (2 * (size - 1) - k if k > size - 1 else k)
    if mode == "replicate":
        return min(max(k, 0), size - 1)
    if mode == "circular":
        return k % size
    raise ValueError(f"padding mode must be one of {', '.join(PADDING_MODES)}, got {mode!r}")


def same_padding(kernel_size, dilation):
    """(top, bottom, left, right) of padding="same" at stride 1: the output keeps the input's size.

        total = dilation * (kernel - 1)        before = floor(total / 2)        after = total - before

    An odd total (an even kernel at dilation 1) cannot be split evenly: the
    extra row goes to the bottom and the extra column to the right, as in PyTorch.
    """
    (KH, KW), (DH, DW) = kernel_size, dilation
    th, tw = DH * (KH - 1), DW * (KW - 1)
    return th // 2, th - th // 2, tw // 2, tw - tw // 2


def check_padding_fits(shape, pads, mode, name):
    """Reflect needs each pad smaller than the side it mirrors, circular at most that side (as PyTorch)."""
    H, W = shape[-2:]
    top, bottom, left, right = pads
    for side, before, after, size in (("height", top, bottom, H), ("width", left, right, W)):
        too_big = max(before, after) >= size if mode == "reflect" else max(before, after) > size
        if mode in ("reflect", "circular") and too_big:
            limit = "smaller than" if mode == "reflect" else "at most"
            raise ValueError(f"{name}: padding_mode={mode!r} needs padding {limit} the input's {side}, got padding "
                             f"({before}, {after}) for {side} {size} (input shape {tuple(shape)}); "
                             "use a smaller padding, a larger input or padding_mode='replicate'")


def pad(x, pads, mode="zeros"):
    """x (..., H, W) padded by pads = (top, bottom, left, right) in ``mode`` (see the module docstring)."""
    xp = get_array_module(x)
    top, bottom, left, right = pads
    H, W = x.shape[-2:]
    if mode == "zeros":
        out = xp.zeros(x.shape[:-2] + (top + H + bottom, left + W + right), dtype=x.dtype)
        out[..., top:top + H, left:left + W] = x
        return out
    rows = xp.asarray([source_index(i - top, H, mode) for i in range(top + H + bottom)])
    cols = xp.asarray([source_index(j - left, W, mode) for j in range(left + W + right)])
    return x.take(rows, axis=-2).take(cols, axis=-1)


def fold_last_axis(d, before, size, mode):
    """Backward of padding the last axis: the middle ``size`` entries, plus each border entry added at s(k)."""
    out = d[..., before:before + size].copy()
    if mode == "zeros":
        return out  # the zeros came from nowhere: their gradient is dropped
    for i in list(range(before)) + list(range(before + size, d.shape[-1])):
        out[..., source_index(i - before, size, mode)] += d[..., i]
    return out


def pad_backward(dout, pads, mode="zeros"):
    """dx (..., H, W) of ``pad`` for the upstream gradient dout (..., H + top + bottom, W + left + right)."""
    xp = get_array_module(dout)
    top, bottom, left, right = pads
    H, W = dout.shape[-2] - top - bottom, dout.shape[-1] - left - right
    d = fold_last_axis(dout, left, W, mode)                                        # columns: (..., H+top+bottom, W)
    d = fold_last_axis(d.swapaxes(-1, -2), top, H, mode).swapaxes(-1, -2)          # rows: (..., H, W)
    return xp.ascontiguousarray(d)
