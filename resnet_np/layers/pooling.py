"""Max pooling (with a naive reference) and global average pooling."""

from ..fast import threads as parallel
from ..backend import get_array_module
from ..checks import check_dout, check_float_input, check_forward_done, check_not_empty_image, layer_name, pair
from ..module import Module
from .im2col import conv_output_size, pad2d


def maxpool2d_naive(x, kernel_size, stride=None, padding=0):
    """Max over each KH x KW window, one output position at a time (reference).

    Padding counts as -infinity, so it is never the maximum.
    """
    xp = get_array_module(x)
    KH, KW = pair(kernel_size, "kernel_size", "maxpool2d_naive", 1)
    SH, SW = pair(stride if stride is not None else kernel_size, "stride", "maxpool2d_naive", 1)
    PH, PW = pair(padding, "padding", "maxpool2d_naive", 0)
    N, C, H, W = x.shape
    OH, OW = conv_output_size(H, KH, SH, PH), conv_output_size(W, KW, SW, PW)
    x_pad = pad2d(x, PH, PW, value=-xp.inf)
    out = xp.empty((N, C, OH, OW), dtype=x.dtype)
    for oh in range(OH):
        for ow in range(OW):
            out[:, :, oh, ow] = x_pad[:, :, oh * SH:oh * SH + KH, ow * SW:ow * SW + KW].max(axis=(2, 3))
    return out


class MaxPool2d(Module):
    """out[n, c, oh, ow] = max of the window of x under that output position.

    The gradient of a max flows only to the element that won it:

        dx[window's argmax] += dout[n, c, oh, ow]

    With overlapping windows (stride < kernel, as in ResNet's 3x3/2 stem
    pool) one input can win several windows and collects the sum of their
    gradients. Ties go to the first element in row-major order, as in
    PyTorch. The forward pass loops over the KH*KW kernel offsets with
    strided slices (like im2col) and records which offset won each window;
    the backward pass sends each gradient straight to its winner through
    that record, one class of non-overlapping windows at a time.
    """

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size", "MaxPool2d", 1)
        self.stride = pair(stride if stride is not None else kernel_size, "stride", "MaxPool2d", 1)
        self.padding = pair(padding, "padding", "MaxPool2d", 0)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"MaxPool2d: padding must be at most half the kernel size, "
                             f"got padding {self.padding} for kernel {self.kernel_size}")
        self._cache = None

    def forward(self, x):
        self._cache = None
        check_float_input(self, x, 4, "(N, C, H, W)")
        check_not_empty_image(self, x)
        xp = get_array_module(x)
        N, C, H, W = x.shape
        (KH, KW), (SH, SW), (PH, PW) = self.kernel_size, self.stride, self.padding
        if KH > H + 2 * PH or KW > W + 2 * PW:
            raise ValueError(f"{layer_name(self)}: kernel {KH}x{KW} is larger than the padded input "
                             f"{H + 2 * PH}x{W + 2 * PW} (input {H}x{W}, padding {PH},{PW})")
        OH, OW = conv_output_size(H, KH, SH, PH), conv_output_size(W, KW, SW, PW)
        index_dtype = xp.uint8 if KH * KW < 256 else xp.int32
        out = xp.empty((N, C, OH, OW), dtype=x.dtype)
        argmax = xp.zeros((N, C, OH, OW), dtype=index_dtype)    # kernel offset of the max
        # A window whose real pixels are all -inf ties with the padding, and the padding
        # (offset 0 of a border window) would keep the max. Its gradient must still reach a
        # real pixel: the window's first one, as in PyTorch. Which offset that is:
        first_row = xp.maximum(PH - SH * xp.arange(OH), 0)
        first_col = xp.maximum(PW - SW * xp.arange(OW), 0)
        first_real = (first_row.reshape(-1, 1) * KW + first_col).astype(index_dtype)   # (OH, OW)

        def images(n0, n1):  # a share of the images per thread (parallel.py)
            x_pad = pad2d(x[n0:n1], PH, PW, value=-xp.inf)
            best, won = out[n0:n1], argmax[n0:n1]
            best[...] = x_pad[:, :, 0:SH * OH:SH, 0:SW * OW:SW]
            better = xp.empty(best.shape, dtype=bool)
            for k in range(1, KH * KW):
                i, j = divmod(k, KW)
                window = x_pad[:, :, i:i + SH * OH:SH, j:j + SW * OW:SW]
                xp.greater(window, best, out=better)   # strict: on a tie the earlier offset keeps the max
                xp.maximum(best, window, out=best)
                # argmax = where(better, k, argmax), without where's slow branching: every
                # offset stored so far is below k, so a maximum does it.
                xp.maximum(won, better.astype(index_dtype) * index_dtype(k), out=won)
            if PH or PW:
                stuck = best == -xp.inf
                if stuck.any():
                    won[stuck] = xp.broadcast_to(first_real, won.shape)[stuck]

        parallel.for_each_part(images, N, parallel.min_images(x), xp)
        self._cache = (x.shape, argmax)
        return out

    def backward(self, dout):
        check_forward_done(self, self._cache)
        x_shape, argmax = self._cache
        check_dout(self, dout, argmax.shape)
        xp = get_array_module(dout)
        N, C, H, W = x_shape
        (KH, KW), (SH, SW), (PH, PW) = self.kernel_size, self.stride, self.padding
        OH, OW = argmax.shape[2:]
        # Windows RH rows (RW columns) apart never overlap, since RH*SH >= KH: within one such
        # class of windows every winner is a different pixel, and a plain indexed += is exact.
        RH, RW = -(-KH // SH), -(-KW // SW)
        # Where kernel offset k = i*KW + j lands, counted in pixels of the row-major image.
        # (A winner is never in the padding: forward saw to it, even for windows of -inf.)
        k = xp.arange(KH * KW)
        offset = (k // KW) * W + k % KW
        dx = xp.empty(x_shape, dtype=dout.dtype)

        def images(n0, n1):  # a share of the images per thread (parallel.py)
            dx[n0:n1] = 0
            flat = dx[n0:n1].reshape(-1)
            planes = (xp.arange((n1 - n0) * C) * (H * W)).reshape(n1 - n0, C, 1, 1)
            for a in range(RH):
                for b in range(RW):
                    top = (a + RH * xp.arange(len(range(a, OH, RH)))) * SH - PH    # the windows' corners
                    left = (b + RW * xp.arange(len(range(b, OW, RW)))) * SW - PW
                    winner = planes + top.reshape(-1, 1) * W + left + offset.take(argmax[n0:n1, :, a::RH, b::RW])
                    flat[winner] += dout[n0:n1, :, a::RH, b::RW]

        parallel.for_each_part(images, N, parallel.min_images(dout), xp)
        return dx

    def kink_pattern(self):
        """Which element won each window (used by gradcheck to spot ties crossed)."""
        return None if self._cache is None else self._cache[1]

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class GlobalAvgPool2d(Module):
    """(N, C, H, W) -> (N, C, 1, 1): the mean of each channel map.

    As torchvision's ``AdaptiveAvgPool2d((1, 1))``; follow it with ``Flatten``.
    Every input pixel contributed 1/(H*W) of the mean, so

        dx[n, c, h, w] = dout[n, c] / (H * W)
    """

    def __init__(self):
        super().__init__()
        self._cache = None  # the input shape

    def forward(self, x):
        self._cache = None
        check_float_input(self, x, 4, "(N, C, H, W)")
        check_not_empty_image(self, x)  # an empty feature map has no mean
        self._cache = x.shape
        return x.mean(axis=(2, 3), keepdims=True)

    def backward(self, dout):
        check_forward_done(self, self._cache)
        N, C, H, W = self._cache
        check_dout(self, dout, (N, C, 1, 1))
        xp = get_array_module(dout)
        dx = xp.empty(self._cache, dtype=dout.dtype)
        dx[...] = dout / (H * W)
        return dx
