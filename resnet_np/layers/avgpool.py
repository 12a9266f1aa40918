"""Average pooling with PyTorch's options (the option-D shortcut of "Bag of Tricks" downsamples with it).

Each output is the sum of its window divided by a divisor that depends on
the window: how many of its pixels count is what ``count_include_pad``
and ``ceil_mode`` decide (``avgpool2d_divisor``). The windows' geometry is
in ``pool_windows.py``.
"""

from ..backend import get_array_module
from ..checks import check_forward_done, pair
from ..module import Module
from .pool_windows import (
    batched,
    batched_grad,
    check_half_kernel_padding,
    pad_windows,
    padded_size,
    pool_output_shape,
    window_stack,
)


def window_extent(size, kernel, stride, padding, out, count_include_pad):
    """Along one axis, how many rows (or columns) of each window count, as PyTorch counts them.

        start = o * stride - padding
        end   = min(start + kernel, size + padding)      (the overhang of ceil mode never counts)
        count = end - start                              (padding included)
        count = min(end, size) - max(start, 0)           (the input pixels only)

    ``count_include_pad`` picks the third line or the fourth.
    """
    starts = [o * stride - padding for o in range(out)]
    ends = [min(start + kernel, size + padding) for start in starts]
    if count_include_pad:
        return [end - start for start, end in zip(starts, ends)]
    return [min(end, size) - max(start, 0) for start, end in zip(starts, ends)]


def avgpool2d_divisor(x_shape, kernel_size, stride, padding, out_size, count_include_pad, divisor_override, xp):
    """(OH, OW): what each window's sum is divided by; the window's rows times its columns, or the override.

        divisor[oh, ow] = count_h[oh] * count_w[ow]      (or the override, for every window)

    ``count_h`` and ``count_w`` come from ``window_extent``, along each axis.
    """
    N, C, H, W = x_shape
    (KH, KW), (SH, SW), (PH, PW), (OH, OW) = kernel_size, stride, padding, out_size
    if divisor_override is not None:
        return xp.full((OH, OW), float(divisor_override))
    count_h = xp.asarray(window_extent(H, KH, SH, PH, OH, count_include_pad), dtype=float)
    count_w = xp.asarray(window_extent(W, KW, SW, PW, OW, count_include_pad), dtype=float)
    return count_h.reshape(-1, 1) * count_w


def avgpool2d(x, kernel_size, stride, padding, out_size, divisor):
    """out[n, c, oh, ow] = sum of the window under (oh, ow) / divisor[oh, ow]; padding adds zeros.

        out[n, c, oh, ow] = sum_{i,j} x_pad[n, c, oh*SH + i, ow*SW + j] / divisor[oh, ow]

    ``x_pad`` is x with zeros around it (and below and right of it, the overhang of ceil mode).
    """
    windows = window_stack(pad_windows(x, kernel_size, stride, padding, (1, 1), out_size, 0.0), kernel_size, stride,
                           out_size)
    return (windows.sum(axis=2) / divisor).astype(x.dtype)


def avgpool2d_backward(dout, x_shape, kernel_size, stride, padding, divisor):
    """dx: every pixel of a window receives its share of that window's dout; overlapping windows add up.

        dx[n, c, h, w] = sum_{oh,ow} dout[n, c, oh, ow] / divisor[oh, ow]      (over the windows that hold h, w)

    Offset by offset: every window adds its share at rows oh*SH + i,
    columns ow*SW + j of the padded gradient, whose padding is cut off.
    """
    xp = get_array_module(dout)
    N, C, H, W = x_shape
    (KH, KW), (SH, SW), (PH, PW) = kernel_size, stride, padding
    OH, OW = dout.shape[2:]
    share = (dout / divisor).astype(dout.dtype)
    dx_pad = xp.zeros((N, C, padded_size(H, KH, SH, PH, 1, OH), padded_size(W, KW, SW, PW, 1, OW)), dtype=dout.dtype)
    for i in range(KH):
        for j in range(KW):
            dx_pad[:, :, i:i + SH * OH:SH, j:j + SW * OW:SW] += share
    return dx_pad[:, :, PH:PH + H, PW:PW + W]


class AvgPool2d(Module):
    """out[n, c, oh, ow] = the sum of the window under (oh, ow), divided by its divisor; PyTorch's options.

        out[n, c, oh, ow] = sum_{i,j} x_pad[n, c, oh*SH + i, ow*SW + j] / divisor[oh, ow]
        dx[n, c, h, w] = sum_{oh,ow} dout[n, c, oh, ow] / divisor[oh, ow]      (over the windows that hold h, w)

    The padding is zeros. ``count_include_pad=True`` (the default) divides
    by the window's size, padding included; ``False`` by the number of
    input pixels it covers; ``divisor_override`` by that number, for every
    window. ``ceil_mode`` keeps a last, partial window: its overhang beyond
    the padding never counts. An unbatched (C, H, W) input gives (C, OH, OW).
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size", "AvgPool2d", 1)
        self.stride = pair(stride if stride is not None else kernel_size, "stride", "AvgPool2d", 1)
        self.padding = pair(padding, "padding", "AvgPool2d", 0)
        self.ceil_mode, self.count_include_pad = bool(ceil_mode), bool(count_include_pad)
        override = divisor_override
        if override is not None and (isinstance(override, bool) or not isinstance(override, int)):
            raise ValueError(f"AvgPool2d: divisor_override must be an int or None, got {divisor_override!r}")
        if divisor_override == 0:
            raise ValueError("AvgPool2d: divisor must be not zero (divisor_override=0)")
        self.divisor_override = divisor_override
        check_half_kernel_padding("AvgPool2d", self.padding, self.kernel_size)
        self._cache = None
        self._unbatched = False

    def forward(self, x):
        self._cache = None
        x, self._unbatched = batched(self, x)
        geometry = (self.kernel_size, self.stride, self.padding)
        out_size = pool_output_shape(self, x.shape, *geometry, (1, 1), self.ceil_mode)
        divisor = avgpool2d_divisor(x.shape, *geometry, out_size, self.count_include_pad, self.divisor_override,
                                    get_array_module(x))
        out = avgpool2d(x, *geometry, out_size, divisor)
        self._cache = (x.shape, out.shape, divisor)
        return out[0] if self._unbatched else out

    def backward(self, dout):
        check_forward_done(self, self._cache)
        x_shape, out_shape, divisor = self._cache
        dout = batched_grad(self, dout, out_shape, self._unbatched)
        dx = avgpool2d_backward(dout, x_shape, self.kernel_size, self.stride, self.padding, divisor)
        return dx[0] if self._unbatched else dx

    def extra_repr(self):
        text = f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
        if self.ceil_mode:
            text += ", ceil_mode=True"
        if not self.count_include_pad:
            text += ", count_include_pad=False"
        return text + (f", divisor_override={self.divisor_override}" if self.divisor_override is not None else "")
