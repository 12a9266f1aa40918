"""Batch norm in fewer, threaded passes: the twins of ``layers/batchnorm.py``'s functions.

Each function has the signature and the result of its plain twin. What is
faster here:

* every pass over the data runs on a share of the images per thread
  (``threads.for_each_part``), the per-channel partial sums added in a
  fixed order (the same bits on every run);
* centring and the sum of squares share one call per thread, while the
  images are still in cache;
* weight * x_hat + bias folds into one scale per channel: two passes over
  the data instead of three; the backward pass's three terms, two;
* per-channel values are spread once over a small (1, C, H, W) array
  (``per_channel``), as NumPy's inner loops run at half speed on an operand
  broadcast with stride 0 along H and W.
"""

from ..backend import get_array_module
from ..layers import batchnorm as plain  # for channel_sum (module, not name: layers/batchnorm.py imports this file)
from . import threads
from .threads import pieces


def per_channel(v, shape):
    """The per-channel values ``v`` (C,) spread over a feature map, as a (1, C, H, W) array.

    ``x * v.reshape(1, C, 1, 1)`` broadcasts v with stride 0 along H and W,
    and NumPy's inner loops run at half speed on that; spread once into a
    small (C, H, W) array, v is broadcast along N only, and every pass over
    x runs at full speed.
    """
    xp = get_array_module(v)
    N, C, H, W = shape
    spread = xp.empty((1, C, H, W), dtype=v.dtype)
    spread[...] = v.reshape(1, C, 1, 1)
    return spread


def add_in_order(parts):
    """The sum of the threads' partial results, always in the same order (the same bits on every run)."""
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


def batch_channel_sum(a, b=None):
    """``plain.channel_sum`` over a whole batch, its images shared out among the threads."""
    parts = threads.for_each_part(lambda n0, n1: plain.channel_sum(a[n0:n1], None if b is None else b[n0:n1]),
                                  len(a), threads.min_images(a), get_array_module(a))
    return add_in_order(parts)


def batch_statistics(x):
    """(mean, var, M, x_centered) of a batch, as ``layers.batchnorm.batch_statistics``."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    M = N * H * W
    mean = batch_channel_sum(x) / M
    x_centered = xp.empty_like(x)
    mean_map = per_channel(mean, x.shape)

    def center(n0, n1):  # x - mean and its per-channel sum of squares: one call per thread
        xc = xp.subtract(x[n0:n1], mean_map, out=x_centered[n0:n1])
        return plain.channel_sum(xc, xc)
    var = add_in_order(threads.for_each_part(center, N, threads.min_images(x), xp)) / M
    return mean, var, M, x_centered


def normalize(x, mean, var, eps, weight, bias, x_centered=None):
    """(out, x_centered, inv_std), as ``layers.batchnorm.normalize``."""
    xp = get_array_module(x)
    N = len(x)
    if x_centered is None:
        x_centered = xp.empty_like(x)
        mean_map = per_channel(mean, x.shape)
        threads.for_each_part(lambda n0, n1: xp.subtract(x[n0:n1], mean_map, out=x_centered[n0:n1]),
                              N, threads.min_images(x), xp)
    inv_std = 1.0 / xp.sqrt(var + eps)
    # weight * x_hat + bias with x_hat = x_centered * inv_std, folded into one
    # scale per channel: two passes over the data instead of three.
    scale_map = per_channel(weight * inv_std, x.shape)
    bias_map = per_channel(bias, x.shape)
    out = xp.empty_like(x)

    def scale_and_shift(n0, n1):  # piece by piece: the second pass finds the piece in cache
        for i0, i1 in pieces(n0, n1, threads.image_bytes(x)):
            xp.multiply(x_centered[i0:i1], scale_map, out=out[i0:i1])
            out[i0:i1] += bias_map
    threads.for_each_part(scale_and_shift, N, threads.min_images(x), xp)
    return out, x_centered, inv_std


def gradient_sums(dout, x_centered):
    """(sum(dout), sum(dout * x_centered)) per channel, as ``layers.batchnorm.gradient_sums``."""
    def sums(n0, n1):  # both sums in one call per thread
        return plain.channel_sum(dout[n0:n1]), plain.channel_sum(dout[n0:n1], x_centered[n0:n1])
    parts = threads.for_each_part(sums, len(dout), threads.min_images(dout), get_array_module(dout))
    return add_in_order([s for s, _ in parts]), add_in_order([s_xc for _, s_xc in parts])


def input_grad(dout, x_centered, inv_std, weight, sum_dout, sum_dout_xc, M, trained, out=None):
    """dx, as ``layers.batchnorm.input_grad``; ``out``, if given, receives dx (it may be ``dout`` itself)."""
    xp = get_array_module(dout)
    scale_map = per_channel(weight * inv_std, dout.shape)         # gamma / sqrt(var + eps)
    dx = xp.empty_like(dout) if out is None else out
    if trained:
        # dx = scale * (dout - sum(dout)/M - x_hat * sum(dout * x_hat)/M), with x_hat = x_centered * inv_std
        mean_map = per_channel(sum_dout / M, dout.shape)
        slope_map = per_channel(inv_std * (sum_dout_xc * inv_std) / M, dout.shape)

        def chain_rule(n0, n1):  # piece by piece, with one small buffer: the piece stays in cache
            step = pieces(n0, n1, threads.image_bytes(dout))
            buffer = xp.empty((step[0][1] - step[0][0],) + dout.shape[1:], dtype=dout.dtype) if step else None
            for i0, i1 in step:
                d = xp.subtract(dout[i0:i1], mean_map, out=dx[i0:i1])
                d -= xp.multiply(x_centered[i0:i1], slope_map, out=buffer[:i1 - i0])
                d *= scale_map
    else:
        def chain_rule(n0, n1):
            xp.multiply(dout[n0:n1], scale_map, out=dx[n0:n1])
    threads.for_each_part(chain_rule, len(dout), threads.min_images(dout), xp)
    return dx
