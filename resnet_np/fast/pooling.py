"""Max pooling on every core, each gradient sent straight to its window's winner: twins of ``layers/pooling.py``.

The plain forward stacks the KH*KW windows' values and takes their argmax;
here the windows are compared offset by offset in place (no stacked copy),
the winner's offset kept in a uint8 array. The plain backward adds dout to
every offset's slice through a mask; here, windows RH rows (RW columns)
apart never overlap (RH*SH >= KH), so within one such class every winner is
a different pixel and one indexed ``+=`` sends each gradient straight to
its pixel. Each thread takes a share of the images (``threads.py``).
Dilation moves each offset's slice (taps DH rows apart); ceil mode pads
for the last window's overhang (``layers/pool_windows.py``).
"""

from ..backend import get_array_module
from ..layers.pool_windows import pad_windows, pool_output_size
from . import threads


def maxpool2d_with_argmax(x, kernel_size, stride, padding, dilation=(1, 1), ceil_mode=False):
    """(out, argmax), as ``layers.pooling.maxpool2d_with_argmax``."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    (KH, KW), (SH, SW), (PH, PW), (DH, DW) = kernel_size, stride, padding, dilation
    OH = pool_output_size(H, KH, SH, PH, DH, ceil_mode)
    OW = pool_output_size(W, KW, SW, PW, DW, ceil_mode)
    index_dtype = xp.uint8 if KH * KW < 256 else xp.int32
    out = xp.empty((N, C, OH, OW), dtype=x.dtype)
    argmax = xp.zeros((N, C, OH, OW), dtype=index_dtype)    # kernel offset of the max
    # A window whose real pixels are all -inf ties with the padding, and the padding
    # (offset 0 of a border window) would keep the max. Its gradient must still reach a
    # real pixel: the window's first one, as in PyTorch. Which offset that is (the first
    # tap at or below row 0; the layer refuses windows of padding only):
    first_row = xp.maximum(-((SH * xp.arange(OH) - PH) // DH), 0)
    first_col = xp.maximum(-((SW * xp.arange(OW) - PW) // DW), 0)
    first_real = (first_row.reshape(-1, 1) * KW + first_col).astype(index_dtype)   # (OH, OW)

    def images(n0, n1):  # a share of the images per thread
        x_pad = pad_windows(x[n0:n1], kernel_size, stride, padding, dilation, (OH, OW), -xp.inf)
        best, won = out[n0:n1], argmax[n0:n1]
        best[...] = x_pad[:, :, 0:SH * OH:SH, 0:SW * OW:SW]
        better = xp.empty(best.shape, dtype=bool)
        for k in range(1, KH * KW):
            i, j = divmod(k, KW)
            window = x_pad[:, :, i * DH:i * DH + SH * OH:SH, j * DW:j * DW + SW * OW:SW]
            xp.greater(window, best, out=better)   # strict: on a tie the earlier offset keeps the max
            xp.maximum(best, window, out=best)
            # argmax = where(better, k, argmax), without where's slow branching: every
            # offset stored so far is below k, so a maximum does it.
            xp.maximum(won, better.astype(index_dtype) * index_dtype(k), out=won)
        if PH or PW:            # without padding, offset 0 of each window is real (ceil mode too)
            stuck = best == -xp.inf
            if stuck.any():
                won[stuck] = xp.broadcast_to(first_real, won.shape)[stuck]

    threads.for_each_part(images, N, threads.min_images(x), xp)
    return out, argmax


def maxpool2d_backward(dout, argmax, x_shape, kernel_size, stride, padding, dilation=(1, 1)):
    """dx, as ``layers.pooling.maxpool2d_backward``."""
    xp = get_array_module(dout)
    N, C, H, W = x_shape
    (KH, KW), (SH, SW), (PH, PW), (DH, DW) = kernel_size, stride, padding, dilation
    OH, OW = argmax.shape[2:]
    # Windows RH rows (RW columns) apart never overlap, since RH*SH >= the window's span: within
    # one such class of windows every winner is a different pixel, and a plain indexed += is exact.
    RH, RW = -(-(DH * (KH - 1) + 1) // SH), -(-(DW * (KW - 1) + 1) // SW)
    # Where kernel offset k = i*KW + j lands, counted in pixels of the row-major image.
    # (A winner is never in the padding: forward saw to it, even for windows of -inf.)
    k = xp.arange(KH * KW)
    offset = (k // KW) * W + k % KW
    if DH != 1 or DW != 1:                  # dilated taps: i*DH rows and j*DW columns from the corner
        offset = (k // KW) * DH * W + (k % KW) * DW
    dx = xp.empty(x_shape, dtype=dout.dtype)

    def images(n0, n1):  # a share of the images per thread
        dx[n0:n1] = 0
        flat = dx[n0:n1].reshape(-1)
        planes = (xp.arange((n1 - n0) * C) * (H * W)).reshape(n1 - n0, C, 1, 1)
        for a in range(RH):
            for b in range(RW):
                top = (a + RH * xp.arange(len(range(a, OH, RH)))) * SH - PH    # the windows' corners
                left = (b + RW * xp.arange(len(range(b, OW, RW)))) * SW - PW
                winner = planes + top.reshape(-1, 1) * W + left + offset.take(argmax[n0:n1, :, a::RH, b::RW])
                flat[winner] += dout[n0:n1, :, a::RH, b::RW]

    threads.for_each_part(images, N, threads.min_images(dout), xp)
    return dx
