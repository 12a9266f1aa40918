"""Where the windows of a pooling layer lie: output size, ceil mode, padding, and the (C, H, W) input.

Max pooling (``pooling.py``) and average pooling (``avgpool.py``) share
PyTorch's geometry. Along one axis of length H, with kernel KH, stride SH,
padding PH and dilation DH, window oh covers the rows

    h = oh * SH - PH + i * DH          (for each tap i of the kernel)

Its span is DH * (KH - 1) + 1 rows. ``ceil_mode`` rounds the number of
windows up instead of down, so a last window may hang over the bottom edge
(its missing rows count as padding), but never one that would start in the
bottom padding: every window starts inside the input or its top padding.
"""

from ..backend import get_array_module
from ..checks import check_array, check_dout, check_float_input, check_not_empty_image, layer_name


def pool_output_size(size, kernel, stride, padding, dilation=1, ceil_mode=False):
    """The number of windows along one axis, as PyTorch counts them.

        span = dilation * (kernel - 1) + 1
        out  = floor((size + 2 * padding - span) / stride) + 1      (without ceil mode)
        out  = ceil((size + 2 * padding - span) / stride) + 1       (in ceil mode)

    In ceil mode the last window is dropped when it would start in the far
    padding, (out - 1) * stride >= size + padding.
    """
    reach = size + 2 * padding - (dilation * (kernel - 1) + 1)
    if not ceil_mode:
        return reach // stride + 1
    out = -(-reach // stride) + 1
    if (out - 1) * stride >= size + padding:
        out -= 1
    return out


def padded_size(size, kernel, stride, padding, dilation, out):
    """The padded length the windows need: 2 * padding more than the input, and the overhang of ceil mode."""
    return max(size + 2 * padding, (out - 1) * stride + dilation * (kernel - 1) + 1)


def pad_windows(x, kernel_size, stride, padding, dilation, out_size, value):
    """(N, C, H, W) -> the padded input every window lies in, the padding filled with ``value``."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    (KH, KW), (SH, SW), (PH, PW), (DH, DW), (OH, OW) = kernel_size, stride, padding, dilation, out_size
    HP, WP = padded_size(H, KH, SH, PH, DH, OH), padded_size(W, KW, SW, PW, DW, OW)
    if (HP, WP) == (H, W):
        return x                                    # nothing to pad: no copy
    x_pad = xp.full((N, C, HP, WP), value, dtype=x.dtype)
    x_pad[:, :, PH:PH + H, PW:PW + W] = x
    return x_pad


def window_stack(x_pad, kernel_size, stride, out_size, dilation=(1, 1)):
    """(N, C, KH*KW, OH, OW): entry k = i*KW + j holds, for every window, its pixel under offset (i, j)."""
    xp = get_array_module(x_pad)
    (KH, KW), (SH, SW), (OH, OW), (DH, DW) = kernel_size, stride, out_size, dilation
    return xp.stack([x_pad[:, :, i * DH:i * DH + SH * OH:SH, j * DW:j * DW + SW * OW:SW]
                     for i in range(KH) for j in range(KW)], axis=2)


def check_half_kernel_padding(layer_cls, padding, kernel_size, dilation=(1, 1)):
    """PyTorch's rule, padding at most half the kernel (2 * P <= K), with PyTorch's two messages for it."""
    span = tuple(d * (k - 1) + 1 for k, d in zip(kernel_size, dilation))
    for p, k, d, s in zip(padding, kernel_size, dilation, span):
        if 2 * p > s:
            raise ValueError(f"{layer_cls}: pad should be at most half of effective kernel size, but got pad={p}, "
                             f"kernel_size={k} and dilation={d} (padding {tuple(padding)} is more than half the "
                             f"kernel's span {span})")
    if any(2 * p > k for p, k in zip(padding, kernel_size)):   # a dilated span does not relax it
        (PH, PW), (KH, KW) = padding, kernel_size
        raise ValueError(f"{layer_cls}: pad should be smaller than or equal to half of kernel size, but got "
                         f"padW = {PW}, padH = {PH}, kW = {KW}, kH = {KH} (padding {tuple(padding)} is more than "
                         f"half the kernel {tuple(kernel_size)})")


def pool_output_shape(layer, x_shape, kernel_size, stride, padding, dilation=(1, 1), ceil_mode=False):
    """(OH, OW) of an (N, C, H, W) input, or PyTorch's "Output size is too small" when no window fits."""
    N, C, H, W = x_shape
    (KH, KW), (SH, SW), (PH, PW), (DH, DW) = kernel_size, stride, padding, dilation
    OH = pool_output_size(H, KH, SH, PH, DH, ceil_mode)
    OW = pool_output_size(W, KW, SW, PW, DW, ceil_mode)
    if OH < 1 or OW < 1:
        spans = "" if (DH, DW) == (1, 1) else f" (with dilation {DH},{DW} it spans {DH * (KH - 1) + 1}x" \
                                              f"{DW * (KW - 1) + 1})"
        raise ValueError(f"{layer_name(layer)}: kernel {KH}x{KW}{spans} is larger than the padded input "
                         f"{H + 2 * PH}x{W + 2 * PW} (input {H}x{W}, padding {PH},{PW}); Given input size: "
                         f"({C}x{H}x{W}). Calculated output size: ({C}x{OH}x{OW}). Output size is too small")
    if (DH, DW) != (1, 1):   # without dilation every window holds an input pixel (padding <= half the kernel)
        for axis, size, k, s, p, d, out in (("row", H, KH, SH, PH, DH, OH), ("column", W, KW, SW, PW, DW, OW)):
            check_windows_hold_a_pixel(layer, axis, size, k, s, p, d, out)
    return OH, OW


def check_windows_hold_a_pixel(layer, axis, size, kernel, stride, padding, dilation, out):
    """A dilated window can step over a small input and hold padding only: no max, no gradient. Refused."""
    for o in range(out):
        if not any(0 <= o * stride - padding + i * dilation < size for i in range(kernel)):
            raise ValueError(f"{layer_name(layer)}: window {axis} {o} holds padding only (dilation {dilation} steps "
                             f"over the input's {size} {axis}s); use less padding or dilation")


def batched(layer, x):
    """(x as (N, C, H, W), whether it came unbatched as (C, H, W)): PyTorch's pooling layers take both."""
    check_array(layer, x)
    if x.ndim not in (3, 4):
        raise ValueError(f"{layer_name(layer)}: expected a 4-D input (N, C, H, W) or a 3-D one (C, H, W), "
                         f"got {x.ndim}-D shape {tuple(x.shape)}")
    check_float_input(layer, x, x.ndim, "")
    x4 = x[None] if x.ndim == 3 else x
    check_not_empty_image(layer, x4)
    return x4, x.ndim == 3


def batched_grad(layer, dout, out_shape, unbatched):
    """The upstream gradient, checked against the forward output's shape, with a batch axis."""
    check_dout(layer, dout, out_shape[1:] if unbatched else out_shape)
    return dout[None] if unbatched else dout
